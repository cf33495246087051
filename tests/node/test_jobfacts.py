"""Slurm's facts about a job (node/jobfacts.py): the epilog's exit status, `scontrol -o show job` lines as
Slurm 22.05 printed them on the test bed, and the agent writing them into the record."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from slurm_plugin import record
from slurm_plugin.node import jobenv, jobfacts
from tests.simnode import SimNode

# Printed by scontrol 22.05 during the epilog of jobs on the test bed (trimmed after TRES's line).
FAILED_LINE = (
    "JobId=1 JobName=fail me UserId=jcalice(1001) GroupId=jcalice(1001) MCS_label=N/A Priority=4294901759 "
    "Nice=0 Account=(null) QOS=(null) JobState={state} Reason=NonZeroExitCode Dependency=(null) Requeue=1 "
    "Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:03 TimeLimit=UNLIMITED TimeMin=N/A "
    "SubmitTime=2026-12-05T23:35:29 EligibleTime=2026-12-05T23:35:29 AccrueTime=2026-12-05T23:35:29 "
    "StartTime=2026-12-05T23:35:31 EndTime=2026-12-05T23:35:34 Deadline=N/A SuspendTime=None "
    "SecsPreSuspend=0 LastSchedEval=2026-12-05T23:35:31 Scheduler=Main Partition=batch "
    "AllocNode:Sid=localhost:21327 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 "
    "NumCPUs=2 NumTasks=1 CPUs/Task=2 ReqB:S:C:T=0:0:*:* TRES=cpu=2,mem=100M,node=1,billing=2 Socks/Node=* "
    "WorkDir=/home/jcalice StdOut=/home/jcalice/slurm-1.out Power= \n"
)
ARRAY_LINE = (
    "JobId=6 ArrayJobId=5 ArrayTaskId=2 JobName=sbatch UserId=jcalice(1001) GroupId=jcalice(1001) "
    "MCS_label=N/A Priority=1 Nice=0 Account=physics QOS=normal JobState=COMPLETED Reason=None "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:02 "
    "TimeLimit=1-02:00:00 TimeMin=N/A SubmitTime=2026-12-05T23:35:30 EligibleTime=2026-12-05T23:35:31 "
    "AccrueTime=2026-12-05T23:35:31 StartTime=2026-12-05T23:35:39 EndTime=2026-12-05T23:35:41 Deadline=N/A "
    "NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=1G,node=1,billing=1 x\n"
)


IDENTITY = {
    "SLURM_JOB_ID": "1",
    "SLURM_JOB_UID": "1001",
    "SLURM_JOB_GID": "1001",
    "SLURM_JOB_USER": "jcalice",
}
JOB = jobenv.from_env(IDENTITY)


def test_the_epilog_exit_status_is_read_strictly() -> None:
    assert jobfacts.exit_status({"SLURM_JOB_EXIT_CODE2": "3:0"}) == {"exit_code": 3, "signal": 0}
    assert jobfacts.exit_status({"SLURM_JOB_EXIT_CODE2": "0:15"}) == {"exit_code": 0, "signal": 15}
    for odd in ("", "3", "-1:0", "3:0 ", "1234:0"):
        assert jobfacts.exit_status({"SLURM_JOB_EXIT_CODE2": odd}) is None
    assert jobenv.from_env({**IDENTITY, "SLURM_CONF": "relative/slurm.conf"}).slurm_conf is None
    assert (
        jobenv.from_env({**IDENTITY, "SLURM_CONF": "/etc/slurm/slurm.conf"}).slurm_conf
        == "/etc/slurm/slurm.conf"
    )


def test_a_failed_job_line_gives_its_name_state_exit_code_and_requests() -> None:
    facts = jobfacts.parse_show_job(FAILED_LINE.format(state="FAILED"), 1, "jcalice", 1001)
    assert facts["job_name"] == "fail me"
    assert (facts["state"], facts["reason"], facts["exit_code"], facts["signal"]) == (
        "FAILED",
        "NonZeroExitCode",
        3,
        0,
    )
    assert facts["time_limit_s"] is None  # UNLIMITED
    assert (facts["req_cpus"], facts["req_mem_mb"]) == (2, 100.0)
    assert facts["end"] - facts["start"] == 3
    assert facts["qos"] is None
    assert facts["array_job_id"] is None


def test_an_array_task_line_gives_the_array_ids_and_the_time_limit() -> None:
    facts = jobfacts.parse_show_job(ARRAY_LINE, 6, "jcalice", 1001)
    assert (facts["array_job_id"], facts["array_task_id"]) == (5, 2)
    assert facts["time_limit_s"] == 26 * 3600
    assert (facts["qos"], facts["req_mem_mb"]) == ("normal", 1024.0)


def test_a_job_name_that_forges_the_fields_after_it_is_not_trusted() -> None:
    line = FAILED_LINE.format(state="FAILED")
    tail = line[line.index(" UserId=") : line.index(" Deadline=")]
    forged = line.replace("JobName=fail me", "JobName=x" + tail.replace("FAILED", "COMPLETED"))
    assert jobfacts.parse_show_job(forged, 1, "jcalice", 1001) == {}
    # another user's id in the name is no anchor at all
    other = line.replace("JobName=fail me", "JobName=x UserId=root(0) GroupId=root(0) JobState=COMPLETED")
    assert jobfacts.parse_show_job(other, 1, "jcalice", 1001)["state"] == "FAILED"
    assert jobfacts.parse_show_job(line, 2, "jcalice", 1001) == {}  # not this job's line


def test_a_job_name_is_bounded_and_printable() -> None:
    assert jobfacts.clean_name("a\x1b[31mb\tc" + "x" * 300) == "a[31mbc" + "x" * 121


def test_combine_keeps_slurms_final_word_or_else_the_epilogs_exit_status() -> None:
    final = jobfacts.parse_show_job(FAILED_LINE.format(state="FAILED"), 1, "jcalice", 1001)
    done = jobfacts.combine({"exit_code": 0, "signal": 0}, final, "0,1")
    assert (done["state"], done["exit_code"], done["req_gpus"]) == ("FAILED", 3, 2)
    assert done["source"] == "scontrol"
    assert done["submit"].endswith("Z")
    completing = jobfacts.parse_show_job(FAILED_LINE.format(state="COMPLETING"), 1, "jcalice", 1001)
    early = jobfacts.combine({"exit_code": 3, "signal": 0}, completing, None)
    assert (early["state"], early["exit_code"], early["source"]) == (None, 3, "epilog")
    assert early["job_name"] == "fail me"  # what does not change at the end is kept
    assert jobfacts.combine(None, {}, None)["source"] == "none"


def test_query_waits_for_the_final_state(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = iter([FAILED_LINE.format(state="COMPLETING"), FAILED_LINE.format(state="FAILED")])
    monkeypatch.setattr(jobfacts, "_scontrol", lambda *args: next(lines))
    assert jobfacts.query(JOB, wait_s=5)["state"] == "FAILED"
    monkeypatch.setattr(jobfacts, "_scontrol", lambda *args: FAILED_LINE.format(state="COMPLETING"))
    started = time.monotonic()
    assert jobfacts.query(JOB, wait_s=0.6)["state"] == "COMPLETING"
    assert time.monotonic() - started < 2
    monkeypatch.setattr(jobfacts, "_scontrol", lambda *args: None)  # no scontrol, or no such job
    assert jobfacts.query(JOB, wait_s=5) == {}


def test_the_agent_writes_slurms_facts_into_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slurm_plugin import config as config_module
    from slurm_plugin.node.agent import Agent

    asked: list[tuple[object, ...]] = []
    line = FAILED_LINE.format(state="FAILED").replace("jcalice(1001)", "user1000(1000)", 1)

    def scontrol(job_id: int, timeout_s: float, conf: str | None) -> str:
        asked.append((job_id, conf))
        return line.replace("JobId=1 ", f"JobId={job_id} ")

    monkeypatch.setattr(jobfacts, "_scontrol", scontrol)
    node = SimNode(tmp_path, interval_s=60, slurm_query_s=3)
    node.job_cgroup(7)
    agent = Agent(config_module.load(node.config), lambda level, text: None)
    agent._listen()
    extra = {"SLURM_JOB_EXIT_CODE2": "0:0", "SLURM_CONF": "/etc/slurm/slurm.conf", "SLURM_JOB_GPUS": "0"}
    try:
        for op in ("prolog", "epilog"):
            env = {k: v for k, v in node.env(7, **extra).items() if k.startswith("SLURM")}
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(node.spool / "agent.sock"))
                client.sendall(json.dumps({"op": op, "env": env}).encode() + b"\n")
                agent._serve()
                assert json.loads(client.makefile().readline())["ok"]
    finally:
        agent._close()  # waits for the record's writer
    document = record.parse(next(node.outbox.glob("sim_7_0_simnode_*.json")).read_bytes())
    assert asked == [(7, "/etc/slurm/slurm.conf")]
    slurm = document["slurm"]
    assert (slurm["state"], slurm["exit_code"]) == ("FAILED", 3)
    assert (slurm["job_name"], slurm["req_gpus"]) == ("fail me", 1)
