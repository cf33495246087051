"""The hooks' fast path: a running agent takes the job, or finalises it, from one message; anything else,
the full path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_plugin.defaults import RUNDIR_ENV
from slurm_plugin.node import fastpath
from tests.simnode import REPO, SimNode, wait_for


@pytest.fixture
def node(tmp_path: Path):
    sim = SimNode(tmp_path)
    yield sim
    sim.stop_agent()


def pointer(node: SimNode) -> Path:
    """The fast path's pointer file for the node's config, in the node's runtime directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RUNDIR_ENV, node.env(0)[RUNDIR_ENV])
        return Path(fastpath.cache_stem(str(node.config)) + ".socket")


def started_agents(node: SimNode) -> int:
    return node.log.read_text().count("agent started (pid") if node.log.exists() else 0


def hand_over(node: SimNode, job_id: int, hook: str = "prolog", spawn: bool = True, **extra: str) -> bool:
    """`fastpath.hand_over` in a process of its own, with the environment a hook gets; without `spawn`,
    a prolog that finds no agent leaves its message but starts none (an agent still starting)."""
    code = (
        "import os, sys; from slurm_plugin import fastpath; "
        f"fastpath.spawn = fastpath.spawn if {spawn} else lambda *args: 0; "
        "sys.exit(not fastpath.hand_over(os.environ, sys.argv[1]))"
    )
    env = {**node.env(job_id, **extra), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, hook], env=env, check=False).returncode == 0


def first_job(node: SimNode, job_id: int) -> None:
    """A job through the full path (which leaves the pointer), then the agent stopped: an idle node."""
    node.job_cgroup(job_id)
    assert node.hook("prolog", job_id).returncode == 0
    wait_for(lambda: node.intervals(job_id) >= 1, what=f"job {job_id} sampled")
    assert node.hook("epilog", job_id).returncode == 0
    wait_for(lambda: node.agent_pid() is None, what="the agent's exit")


def incoming(node: SimNode) -> list[str]:
    return sorted(os.listdir(node.spool / "incoming"))


def test_a_running_agent_takes_the_next_job_from_one_message(node: SimNode) -> None:
    node.job_cgroup(1)
    node.job_cgroup(2)
    assert node.hook("prolog", 1).returncode == 0  # the full path: starts the agent, leaves the pointer
    wait_for(lambda: node.intervals(1) >= 1, what="job 1 sampled")
    assert pointer(node).read_text().splitlines()[1] == str(node.spool / "agent.sock")
    assert hand_over(node, 2)
    assert (node.spool / "jobs" / "2.0" / "job.json").exists()  # written by the agent before it answered
    wait_for(lambda: node.intervals(2) >= 1, what="job 2 sampled")
    assert started_agents(node) == 1
    assert node.hook("epilog", 2).returncode == 0
    record = node.record(2)
    assert record is not None
    assert (record["status"], record["account"]) == ("complete", "physics")


def test_the_prolog_script_uses_it_and_needs_no_second_agent(node: SimNode) -> None:
    for job_id in (3, 4, 5):
        node.job_cgroup(job_id)
        assert node.hook("prolog", job_id).returncode == 0
        wait_for(lambda job_id=job_id: node.intervals(job_id) >= 1, what=f"job {job_id} sampled")
    assert started_agents(node) == 1


def test_without_an_agent_the_prolog_leaves_the_job_to_the_agent_it_starts(node: SimNode) -> None:
    first_job(node, 6)
    node.job_cgroup(7)
    assert node.hook("prolog", 7).returncode == 0
    wait_for(lambda: node.intervals(7) >= 1, what="job 7 sampled by a new agent")
    assert started_agents(node) == 2
    assert incoming(node) == []
    header = node.journal(7)[0]
    assert header["first_sample"] - header["start"] < 5  # the prolog's time is the job's start
    assert node.hook("epilog", 7).returncode == 0
    record = node.record(7)
    assert record is not None
    assert (record["status"], record["account"]) == ("complete", "physics")


def test_an_epilog_before_the_new_agent_finalises_the_job_once(node: SimNode) -> None:
    first_job(node, 21)
    assert hand_over(node, 22, spawn=False)
    assert incoming(node) == ["22.0.json"]
    assert node.hook("epilog", 22).returncode == 0  # no agent listens: the full path adopts the job
    record = node.record(22)
    assert record is not None
    assert record["status"] == "partial"
    assert "the sampler never took a sample of this job" in record["partial_reasons"]
    assert incoming(node) == []
    assert not (node.spool / "jobs" / "22.0").exists()
    assert node.agent_pid() is None  # nothing left to sample


def test_a_starting_agent_adopts_every_waiting_job(node: SimNode) -> None:
    first_job(node, 23)
    for job_id in (24, 25):
        node.job_cgroup(job_id)
        assert hand_over(node, job_id, spawn=False)
    node.job_cgroup(26)
    assert node.hook("prolog", 26).returncode == 0  # the full path starts the agent
    for job_id in (24, 25, 26):
        wait_for(lambda job_id=job_id: node.intervals(job_id) >= 1, what=f"job {job_id} sampled")
    assert incoming(node) == []


def test_a_refused_message_is_set_aside_and_logged(node: SimNode) -> None:
    first_job(node, 27)
    assert hand_over(node, 28, spawn=False, SLURM_JOB_ACCOUNT="a/../b")
    node.job_cgroup(29)
    assert node.hook("prolog", 29).returncode == 0
    wait_for(lambda: node.intervals(29) >= 1, what="job 29 sampled")
    wait_for(lambda: "refused, moved aside" in node.log.read_text(), what="the refusal logged")
    assert [name.split("-")[0] for name in incoming(node)] == ["failed"]
    assert not (node.spool / "jobs" / "28.0").exists()


def test_an_odd_job_id_without_an_agent_takes_the_full_path(node: SimNode) -> None:
    first_job(node, 30)
    assert not hand_over(node, 31, SLURM_JOB_ID="31;id")
    assert incoming(node) == []


def test_an_edited_config_sends_the_prolog_down_the_full_path(node: SimNode) -> None:
    node.job_cgroup(8)
    assert node.hook("prolog", 8).returncode == 0
    wait_for(lambda: node.intervals(8) >= 1, what="job 8 sampled")
    node.config.write_text(node.config.read_text() + "\n")
    assert not hand_over(node, 9)  # the pointer names the config as it was
    assert node.hook("prolog", 9).returncode == 0  # the full path refreshes it
    assert hand_over(node, 10)


def test_a_missing_pointer_is_written_again_by_the_full_path(node: SimNode) -> None:
    node.job_cgroup(11)
    assert node.hook("prolog", 11).returncode == 0
    wait_for(lambda: node.intervals(11) >= 1, what="job 11 sampled")
    pointer(node).unlink()
    assert not hand_over(node, 12)
    assert node.hook("prolog", 12).returncode == 0
    assert pointer(node).exists()


@pytest.mark.parametrize(("variable", "value"), [("SLURM_JOB_ID", "1;id"), ("SLURM_JOB_ACCOUNT", "a/../b")])
def test_the_agent_refuses_a_hostile_environment_and_the_full_path_logs_it(
    node: SimNode, variable: str, value: str
) -> None:
    node.job_cgroup(13)
    assert node.hook("prolog", 13).returncode == 0
    wait_for(lambda: node.intervals(13) >= 1, what="job 13 sampled")
    assert not hand_over(node, 14, **{variable: value})
    assert node.hook("prolog", 14, **{variable: value}).returncode == 0
    assert "bad Slurm environment" in node.log.read_text()
    assert sorted(os.listdir(node.spool / "jobs")) == ["13.0"]


class _Recording(dict):
    """An environment that remembers which variables were asked for."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, key: str, default: object = None) -> object:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> object:
        self.read.add(key)
        return super().__getitem__(key)


def test_it_forwards_exactly_what_jobenv_and_jobfacts_read(slurm_env: dict[str, str]) -> None:
    from slurm_plugin.node import jobenv, jobfacts

    recording = _Recording(slurm_env)
    jobenv.from_env(recording)
    jobfacts.end_facts(recording)
    assert recording.read == set(fastpath.FORWARDED)


def test_a_gpu_job_keeps_its_gpus_on_the_fast_path(node: SimNode) -> None:
    node.job_cgroup(15)
    node.job_cgroup(16)
    assert node.hook("prolog", 15).returncode == 0
    wait_for(lambda: node.intervals(15) >= 1, what="job 15 sampled")
    gpus = {"SLURM_JOB_GPUS": "1", "CUDA_VISIBLE_DEVICES": "0"}
    assert hand_over(node, 16, **gpus)
    job = json.loads((node.spool / "jobs" / "16.0" / "job.json").read_text())["job"]
    assert (job["job_gpus"], job["cuda_visible_devices"]) == ("1", "0")


def test_a_running_agent_finalises_the_job_for_the_epilog(node: SimNode) -> None:
    node.job_cgroup(17)
    assert node.hook("prolog", 17).returncode == 0
    wait_for(lambda: node.intervals(17) >= 2, what="job 17 sampled twice")
    assert hand_over(node, 17, "epilog")
    record = node.record(17)  # written before the agent answered
    assert record is not None
    assert record["status"] == "complete"
    assert not (node.spool / "jobs" / "17.0").exists()


def test_an_epilog_for_a_job_never_sampled_here_is_a_no_op(node: SimNode) -> None:
    node.job_cgroup(18)
    assert node.hook("prolog", 18).returncode == 0
    wait_for(lambda: node.intervals(18) >= 1, what="job 18 sampled")
    assert hand_over(node, 19, "epilog")
    assert node.record(19) is None


def test_without_an_agent_the_epilogs_full_path_writes_a_partial_record(node: SimNode) -> None:
    node.job_cgroup(20)
    assert node.hook("prolog", 20).returncode == 0
    wait_for(lambda: node.intervals(20) >= 1, what="job 20 sampled")
    os.kill(node.agent_pid(), 9)
    assert not hand_over(node, 20, "epilog")
    assert node.hook("epilog", 20).returncode == 0
    record = node.record(20)
    assert record is not None
    assert record["status"] == "partial"


def test_a_message_left_before_a_reboot_becomes_a_partial_record(node: SimNode) -> None:
    first_job(node, 32)
    assert hand_over(node, 33, spawn=False)
    message = node.spool / "incoming" / "33.0.json"
    left = json.loads(message.read_text())
    assert left["boot"]  # this boot's id, so an agent after a reboot knows the job died with it
    message.write_text(json.dumps({**left, "boot": "00000000-0000-0000-0000-000000000000"}))
    node.job_cgroup(34)
    assert node.hook("prolog", 34).returncode == 0
    record = wait_for(lambda: node.record(33), what="job 33's record")
    assert record["status"] == "partial"
    assert "the node rebooted during the job" in record["partial_reasons"]


# -- PrologFlags=RunInJob (issue 13): a hook inside the job's cgroup starts no agent ---------------

SLURMD_V2 = "0::/system.slice/slurmd.service\n"
SLURMD_V1 = (
    "12:cpuset:/\n4:cpu,cpuacct:/system.slice/slurmd.service\n1:name=systemd:/system.slice/slurmd.service\n"
)
RUN_IN_JOB = "0::/system.slice/slurmstepd.scope/job_97/step_extern/slurm\n"


@pytest.mark.parametrize(
    ("text", "inside"),
    [
        (SLURMD_V2, None),
        (SLURMD_V1, None),
        (RUN_IN_JOB, "job_97/step_extern"),
        ("0::/system.slice/node1_slurmstepd.scope/s0KZ3M1Q7H2B4X/step_extern\n", "step_extern"),
        ("4:cpuacct:/slurm_node1/uid_1000/job_97/step_extern\n", "job_97"),
        ("0::/system.slice/job_runner.service\n", None),
    ],
    ids=["slurmd-v2", "slurmd-v1", "run-in-job-v2", "run-in-job-sluid", "run-in-job-v1", "lookalike"],
)
def test_job_cgroup_is_found_in_proc_self_cgroup(tmp_path: Path, text: str, inside: str | None) -> None:
    fake = tmp_path / "cgroup"
    fake.write_text(text)
    found = fastpath.job_cgroup(str(fake))
    assert found is None if inside is None else inside in (found or "")


def test_no_proc_self_cgroup_is_not_a_job(tmp_path: Path) -> None:
    assert fastpath.job_cgroup(str(tmp_path / "absent")) is None


def test_a_prolog_inside_a_jobs_cgroup_starts_no_agent_and_says_so(
    node: SimNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slurm_plugin.eventlog import EventLog
    from slurm_plugin.node import agent_client, hook_settings, hooks

    fake = tmp_path / "self-cgroup"
    fake.write_text(RUN_IN_JOB)
    monkeypatch.setattr(fastpath, "SELF_CGROUP", str(fake))
    monkeypatch.setattr(fastpath.job_cgroup, "__defaults__", (str(fake),))
    spawned: list[object] = []
    monkeypatch.setattr(agent_client, "spawn_agent", lambda *args: spawned.append(args) or 0)
    for name, value in node.env(97).items():
        monkeypatch.setenv(name, value)
    settings = hook_settings.load()
    assert pointer(node).exists()
    assert not fastpath.hand_over(os.environ, "prolog")  # no agent listens: left to the full path
    hooks.prolog(settings, EventLog("prolog", node.log))
    assert spawned == []
    assert (node.spool / "jobs" / "97.0" / "job.json").is_file()  # an agent run as a service finds it
    assert not list((node.spool / "incoming").iterdir())
    lines = [line for line in node.log.read_text().splitlines() if "RunInJob" in line]
    assert len(lines) == 1
    assert "job 97.0" in lines[0]
    assert "no agent started" in lines[0]
