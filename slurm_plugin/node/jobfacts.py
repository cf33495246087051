"""What Slurm says about a job besides its identity: name, final state, exit code, limits, requests, array
and het-job ids, QOS and times, for the record's `slurm` block (docs/record.md).

Two sources. The epilog's environment (`SLURM_JOB_EXIT_CODE2`, "<exit>:<signal>") is always there but
is set when slurmctld sends the kill, so a cancelled job's is still "0:0". `scontrol -o show job` after the
epilog has ended gives the state Slurm reports (while the epilog runs it prints COMPLETING); the agent asks
for it with a short timeout and records without it when Slurm does not answer (`state` stays null rather
than guessed). The job name and the paths scontrol prints are the user's text: the name is bounded and
stripped of control characters, and a line in which the job's user could have forged the fields that
follow the name is not trusted at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from slurm_plugin.node.jobenv import JobInfo
from slurm_plugin.times import iso_z

EXIT_CODE2 = "SLURM_JOB_EXIT_CODE2"
ENV_NAMES = (EXIT_CODE2,)  # what the epilog forwards besides the identity (fastpath.FORWARDED)
EXIT = re.compile(r"(\d{1,3}):(\d{1,3})")
# Slurm's base job states (slurm.h job_states); COMPLETING is a flag printed while epilogs run.
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
    }
)
MAX_NAME = 128
POLL_S = 0.25
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# The fields scontrol prints right after the job's name (slurm_sprint_job_info): anchored on the user and
# uid from slurmd's environment, so a name must repeat them, and the whole pattern, to forge what follows.
_AFTER_NAME = (
    r" UserId={user}\({uid}\) GroupId=\S+ MCS_label=\S+ Priority=\d+ Nice=-?\d+ Account=\S+"
    r" QOS=(?P<qos>\S+) JobState=(?P<state>[A-Z_]+) Reason=(?P<reason>\S+) Dependency=\S+ Requeue=\d"
    r" Restarts=\d+ BatchFlag=\d Reboot=\d ExitCode=(?P<exit>\d+):(?P<signal>\d+)"
    r" RunTime=\S+ TimeLimit=(?P<limit>\S+) TimeMin=\S+ SubmitTime=(?P<submit>\S+)"
    r" EligibleTime=\S+ AccrueTime=\S+ StartTime=(?P<start>\S+) EndTime=(?P<end>\S+)(?= )"
)
_HEAD = re.compile(
    r"JobId=(?P<job>\d+)(?: HetJobId=(?P<het>\d+) HetJobOffset=(?P<het_offset>\d+))?"
    r"(?: ArrayJobId=(?P<array>\d+) ArrayTaskId=(?P<task>\d+))?(?: (?!JobName=)[A-Za-z]+=\S+)* JobName="
)
_NUM_CPUS = re.compile(r" NumNodes=\S+ NumCPUs=(\d+) NumTasks=\S+ CPUs/Task=\S+ ReqB:S:C:T=\S+ TRES=(\S+) ")
FIELDS = (
    "job_name",
    "state",
    "reason",
    "exit_code",
    "signal",
    "time_limit_s",
    "req_cpus",
    "req_mem_mb",
    "array_job_id",
    "array_task_id",
    "het_job_id",
    "het_job_offset",
    "qos",
    "submit",
    "start",
    "end",
)
_UNITS = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2, "P": 1024.0**3}


def exit_status(env: Mapping[str, str]) -> dict[str, int] | None:
    """The job's exit code and signal as the epilog's environment gives them, or None if absent or odd."""
    match = EXIT.fullmatch(env.get(EXIT_CODE2) or "")
    return {"exit_code": int(match[1]), "signal": int(match[2])} if match else None


def end_facts(env: Mapping[str, str]) -> dict[str, Any]:
    """What the epilog passes on for the record, beside the job's identity: its exit status."""
    return {"exit": exit_status(env)}


def gpu_count(job_gpus: str | None) -> int | None:
    """GPUs allocated on this node, from SLURM_JOB_GPUS ("0,2")."""
    return len(job_gpus.split(",")) if job_gpus else None


def query(job: JobInfo, wait_s: float, final: bool = True) -> dict[str, Any]:
    """Slurm's facts for a job, waiting up to `wait_s` for its final state (`final`; else the first
    answer: a running job's limits); {} when scontrol is missing, slow or says nothing usable."""
    deadline = time.monotonic() + wait_s
    facts: dict[str, Any] = {}
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return facts
        text = _scontrol(job.job_id, remaining, job.slurm_conf)
        facts = parse_show_job(text, job.job_id, job.user, job.uid) if text else facts
        if facts.get("state") in FINAL_STATES or not text or not final:
            return facts
        time.sleep(min(POLL_S, max(deadline - time.monotonic(), 0)))


def _scontrol(job_id: int, timeout_s: float, conf: str | None) -> str | None:
    import subprocess  # the agent's record writer only: keep it off the hooks' import path

    env = {"PATH": SAFE_PATH, "LANG": "C"} | ({"SLURM_CONF": conf} if conf else {})
    try:
        done = subprocess.run(  # a fixed argv, no shell
            ["scontrol", "-o", "show", "job", str(job_id)],
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def combine(exit: dict[str, int] | None, queried: dict[str, Any], job_gpus: str | None) -> dict[str, Any]:
    """The record's `slurm` block: Slurm's final word where it gave one, else the epilog's exit status
    and a null state (`source` says which)."""
    final = queried.get("state") in FINAL_STATES
    facts: dict[str, Any] = {key: queried.get(key) for key in FIELDS}
    if not final:
        facts.update(state=None, reason=None, exit_code=None, signal=None)
        facts.update(exit or {})
    for key in ("submit", "start", "end"):
        moment = facts[key]
        facts[key] = None if moment is None else iso_z(moment, "seconds")
    facts["req_gpus"] = gpu_count(job_gpus)
    facts["source"] = "scontrol" if final else "epilog" if exit else "none"
    return facts


def parse_show_job(text: str, job_id: int, user: str, uid: int) -> dict[str, Any]:
    """The facts in one `scontrol -o show job` line for `job_id`; {} for a line that is not that job's or
    whose fields after the user's job name appear more than once (forged by the name or a path)."""
    line = next((row for row in text.splitlines() if row.startswith(f"JobId={job_id} ")), "")
    head = _HEAD.match(line)
    if head is None:
        return {}
    after = re.compile(_AFTER_NAME.format(user=re.escape(user), uid=uid))
    found = list(after.finditer(line, head.end()))
    if len(found) != 1:
        return {}
    tail = found[0]
    facts: dict[str, Any] = {
        "job_name": clean_name(line[head.end() : tail.start()]),
        "state": tail["state"] if tail["state"] in FINAL_STATES | {"RUNNING", "COMPLETING"} else None,
        "reason": _null(tail["reason"]),
        "exit_code": int(tail["exit"]),
        "signal": int(tail["signal"]),
        "time_limit_s": time_limit_s(tail["limit"]),
        "submit": _epoch(tail["submit"]),
        "start": _epoch(tail["start"]),
        "end": _epoch(tail["end"]),
        "qos": _null(tail["qos"]),
        "array_job_id": _int(head["array"]),
        "array_task_id": _int(head["task"]),
        "het_job_id": _int(head["het"]),
        "het_job_offset": _int(head["het_offset"]),
    }
    requested = _NUM_CPUS.search(line, tail.end())
    if requested and len(_NUM_CPUS.findall(line)) == 1:
        tres = dict(part.split("=", 1) for part in requested[2].split(",") if "=" in part)
        facts["req_cpus"] = int(requested[1])
        facts["req_mem_mb"] = memory_mb(tres.get("mem"))
    return facts


def clean_name(raw: str) -> str:
    """A job name fit to print: control characters dropped, at most MAX_NAME characters."""
    return "".join(c for c in raw if c.isprintable())[:MAX_NAME]


def time_limit_s(text: str) -> float | None:
    """Seconds in scontrol's "[days-]HH:MM:SS"; None for UNLIMITED or anything else."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)", text)
    if match is None:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def memory_mb(text: str | None) -> float | None:
    """Slurm's TRES memory ("100M", "1G", "2.50G") in MiB."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP])", text or "")
    return round(float(match[1]) * _UNITS[match[2]], 3) if match else None


def _epoch(text: str) -> float | None:
    """scontrol's local "YYYY-MM-DDTHH:MM:SS" as epoch seconds; None for Unknown/None/N/A."""
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def _null(text: str) -> str | None:
    return None if text in ("(null)", "None", "N/A") else text[:64]


def _int(text: str | None) -> int | None:
    return int(text) if text is not None else None
