"""The job's identity as slurmd hands it to the prolog and epilog, validated strictly.

Variables come from slurmd's `_build_env` (src/plugins/prep/script/prep_script_slurmd.c). Most are set
by Slurm, but names such as the account are chosen by users, so every value is checked against a
narrow pattern and length before it reaches a path, a log line or a record.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from typing import NamedTuple

from slurm_plugin import runs

NAME = re.compile(r"[A-Za-z0-9_.@+\-]{1,128}")
SLUID = re.compile(r"s[0-9A-Z]{13}")
CPUS_PER_NODE = re.compile(r"(\d{1,6})(?:\(x\d{1,6}\))?")
MAX_GPU_LIST = 4096


class JobEnvError(ValueError):
    """A required variable is missing or holds something Slurm would never put there."""


# A named tuple rather than a dataclass: the hooks' full path imports this, and dataclasses costs
# milliseconds more than typing's NamedTuple.
class JobInfo(NamedTuple):
    cluster: str
    job_id: int
    restart_count: int
    node: str
    user: str
    uid: int
    gid: int
    account: str | None = None
    partition: str | None = None
    sluid: str | None = None
    cpus_per_node: int | None = None
    job_gpus: str | None = None
    cuda_visible_devices: str | None = None
    slurm_conf: str | None = None  # what scontrol reads (node/jobfacts.py); set by slurmd, not the job
    start_time: int | None = None  # SLURM_JOB_START_TIME (Slurm 23.02+), epoch seconds
    run: str | None = None  # `run_of`, fixed by the prolog and kept in job.json; None before that

    @property
    def key(self) -> str:
        """Spool and journal name of this run of the job on this node (a requeue is a new run)."""
        return f"{self.job_id}.{self.restart_count}"

    def to_dict(self) -> dict[str, object]:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> JobInfo:
        """Rebuild from a spool file, re-validating every field."""
        env = {ENV_NAMES[k]: str(v) for k, v in data.items() if k in ENV_NAMES and v is not None}
        info = from_env(env, cluster=str(data.get("cluster") or ""), node=str(data.get("node") or ""))
        run = data.get("run")
        if run is None:
            return info
        if not runs.valid(run):
            raise JobEnvError(f"run={str(run)[:40]!r} is not a run identity")
        return info._replace(run=run)


ENV_NAMES = {
    "cluster": "SLURM_CLUSTER_NAME",
    "job_id": "SLURM_JOB_ID",
    "restart_count": "SLURM_JOB_RESTART_COUNT",
    "node": "SLURMD_NODENAME",
    "user": "SLURM_JOB_USER",
    "uid": "SLURM_JOB_UID",
    "gid": "SLURM_JOB_GID",
    "account": "SLURM_JOB_ACCOUNT",
    "partition": "SLURM_JOB_PARTITION",
    "sluid": "SLURM_JOB_SLUID",
    "cpus_per_node": "SLURM_JOB_CPUS_PER_NODE",
    "job_gpus": "SLURM_JOB_GPUS",
    "cuda_visible_devices": "CUDA_VISIBLE_DEVICES",
    "slurm_conf": "SLURM_CONF",
    "start_time": "SLURM_JOB_START_TIME",
}


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is not None:
            return default
        raise JobEnvError(f"{name} is not set")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise JobEnvError(f"{name}={raw[:40]!r} is not a non-negative integer")
    return int(raw)


def _name(env: Mapping[str, str], name: str, fallback: str | None = None) -> str | None:
    raw = env.get(name) or fallback
    if raw is None:
        return None
    if not NAME.fullmatch(raw):
        raise JobEnvError(f"{name}={raw[:40]!r} has characters or a length Slurm does not produce")
    return raw


def _cpus_per_node(raw: str | None) -> int | None:
    """Allocated CPUs on this node when SLURM_JOB_CPUS_PER_NODE is unambiguous ("4", "4(x2)", "4,4")."""
    if not raw:
        return None
    counts = set()
    for part in raw.split(",")[:64]:
        match = CPUS_PER_NODE.fullmatch(part)
        if not match:
            return None
        counts.add(int(match.group(1)))
    return counts.pop() if len(counts) == 1 else None


def _bounded(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_GPU_LIST or not raw.isprintable():
        raise JobEnvError(f"{name} is longer than {MAX_GPU_LIST} characters or not printable")
    return raw


def _override(env: Mapping[str, str], name: str, configured: str) -> str | None:
    """A configured value wins over Slurm's; both are validated the same way."""
    return _name({name: configured}, name) if configured else _name(env, name)


def hostname() -> str:
    """The short host name: a node's name where Slurm gives none (SLURMD_NODENAME)."""
    return socket.gethostname().split(".")[0]


def from_env(env: Mapping[str, str], cluster: str = "", node: str = "") -> JobInfo:
    """Validate a prolog/epilog environment; `cluster` and `node` override Slurm's when given."""
    sluid = env.get("SLURM_JOB_SLUID") or None
    if sluid is not None and not SLUID.fullmatch(sluid):
        raise JobEnvError(f"SLURM_JOB_SLUID={sluid[:40]!r} is not a SLUID")
    return JobInfo(
        cluster=_name(
            {"cluster": cluster} if cluster else env, "cluster" if cluster else "SLURM_CLUSTER_NAME"
        )
        or "default",
        job_id=_int(env, "SLURM_JOB_ID"),
        restart_count=_int(env, "SLURM_JOB_RESTART_COUNT", 0),
        node=_override(env, "SLURMD_NODENAME", node) or hostname(),
        user=_name(env, "SLURM_JOB_USER") or "",
        uid=_int(env, "SLURM_JOB_UID"),
        gid=_int(env, "SLURM_JOB_GID"),
        account=_name(env, "SLURM_JOB_ACCOUNT"),
        partition=_name(env, "SLURM_JOB_PARTITION"),
        sluid=sluid,
        cpus_per_node=_cpus_per_node(env.get("SLURM_JOB_CPUS_PER_NODE")),
        job_gpus=_bounded(env, "SLURM_JOB_GPUS"),
        cuda_visible_devices=_bounded(env, "CUDA_VISIBLE_DEVICES"),
        slurm_conf=_path(env.get("SLURM_CONF")),
        start_time=_int(env, "SLURM_JOB_START_TIME", 0) or None,
    )


def run_of(info: JobInfo, prolog_s: float) -> str:
    """Which run of job `info.job_id` this is: the identity that tells it from another job given the
    same id (Slurm reuses ids after MaxJobId wraps and after a controller state reset).

    Slurm's SLUID (25.11+), else the job's start time (23.02+): both come from the job's credential
    (prep_script_slurmd.c `_build_env`), so every node of the job derives the same run. Older Slurm
    gives neither; the prolog's own clock is the fallback (`seen:`), which differs between nodes, so
    ingest joins a multi-node job's `seen:` parts by user and overlapping span (docs/record.md).
    Called once, by the prolog; the epilog and agent read the result back from job.json.
    """
    if info.sluid:
        return f"sluid:{info.sluid}"
    if info.start_time:
        return f"start:{info.start_time}"
    return f"{runs.SEEN}{int(prolog_s)}"


def _path(raw: str | None) -> str | None:
    """An absolute, printable path of bounded length, else None (only scontrol's enrichment needs it)."""
    return raw if raw and raw.startswith("/") and len(raw) < MAX_GPU_LIST and raw.isprintable() else None
