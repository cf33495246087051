"""What the cgroup versions share: the key of a job's cgroup, its usage, and the handle read per tick.

Its own module so that `cgroup_v1` and `cgroup_v2` import these and the `cgroup` dispatcher imports
them, with no cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


# Not frozen: built on every tick, and a frozen dataclass sets each field through object.__setattr__.
@dataclass(slots=True)
class JobUsage:
    cpu_s: float  # cumulative CPU time of every process the job ever ran
    memory_bytes: int  # memory in use, page cache that can be dropped excluded
    cpus: frozenset[int]  # the cpuset the job may run on


@dataclass(frozen=True, slots=True)
class CgroupKey:
    """What names a job's cgroup directory (Slurm's layout needs uid and node besides the job id)."""

    job_id: int
    uid: int
    node: str
    sluid: str | None = None


class JobCgroup(Protocol):
    path: Path

    def read(self) -> JobUsage:
        """Current usage; raises OSError once the cgroup is gone."""
        ...
