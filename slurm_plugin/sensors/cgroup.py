"""Find a Slurm job's cgroup and read its CPU time, memory and cpuset, for cgroup v1 and v2.

The job cgroup is created by slurmstepd after the prolog and removed before the epilog
(src/slurmd/slurmd/req.c, src/plugins/cgroup/v2/cgroup_v2.c), so callers poll `find_job_cgroup`
until it appears and keep the last reading once `read` fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from slurm_plugin.config import Cgroup


# Not frozen: built on every tick, and a frozen dataclass sets each field through object.__setattr__.
@dataclass(slots=True)
class JobUsage:
    cpu_s: float  # cumulative CPU time of every process the job ever ran
    memory_bytes: int  # memory in use, page cache that can be dropped excluded
    cpus: frozenset[int]  # the cpuset the job may run on


@dataclass(frozen=True, slots=True)
class JobRef:
    """What identifies a job's cgroup directory."""

    job_id: int
    uid: int
    node: str
    sluid: str | None = None


class JobCgroup(Protocol):
    path: Path

    def read(self) -> JobUsage:
        """Current usage; raises OSError once the cgroup is gone."""
        ...


def parse_cpulist(text: str) -> frozenset[int]:
    """Parse a kernel cpu list such as "0-3,8,10-11"; raises ValueError on anything else."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first < 0 or last < first or last > 65535:
            raise ValueError(f"bad cpu range {part!r}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def flat_keyed(text: str, key: str) -> int:
    """The value of `key` in a flat-keyed file such as memory.stat or cpu.stat (0 when absent).

    Found by one search rather than a split into lines: v1's total_inactive_file is near the end.
    """
    _, found, rest = ("\n" + text).partition(f"\n{key} ")
    return int(rest.partition("\n")[0]) if found else 0


def detect_version(cgroupfs: Path) -> str | None:
    """ "v2" for a unified hierarchy, "v1" for per-controller mounts, None when neither is there."""
    if (cgroupfs / "cgroup.controllers").is_file():
        return "v2"
    if (cgroupfs / "cpuacct").is_dir() or (cgroupfs / "cpu,cpuacct").is_dir():
        return "v1"
    return None


def find_job_cgroup(settings: Cgroup, cgroupfs: Path, job: JobRef) -> JobCgroup | None:
    """The job's cgroup if it exists now, for the configured or detected cgroup version."""
    from slurm_plugin.sensors import cgroup_v1, cgroup_v2

    version = settings.version if settings.version != "auto" else detect_version(cgroupfs)
    if version == "v1":
        return cgroup_v1.find(cgroupfs, settings.v1_prepend, job)
    if version == "v2":
        return cgroup_v2.find(cgroupfs, settings.v2_slice, job)
    return None
