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
    memory_bytes: int | None  # memory in use less droppable page cache; None: no memory controller
    cpus: frozenset[int]  # the CPUs its cpuset confines it to; empty when none does (ConstrainCores=no)
    memory_limit_bytes: int | None = None  # what it holds (ConstrainRAMSpace=yes); None: no limit set


UNLIMITED = 2**62  # v1 writes "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 on x86-64)


def memory_limit(text: str) -> int | None:
    """A cgroup memory limit file's value ("max" on v2, a huge number on v1 when unlimited) in bytes."""
    value = text.strip()
    if value == "max":
        return None
    limit = int(value)
    return limit if 0 < limit < UNLIMITED else None


@dataclass(frozen=True, slots=True)
class CgroupKey:
    """What names a job's cgroup directory (Slurm's layout needs uid and node besides the job id)."""

    job_id: int
    uid: int
    node: str
    sluid: str | None = None


def confined(cpus: frozenset[int], parent: frozenset[int]) -> frozenset[int]:
    """The job's cpuset if it confines the job, else empty: with ConstrainCores=no (Slurm's default)
    a job's cpuset is its parent's, the whole node's, and says nothing of what Slurm allocated."""
    return cpus if cpus and cpus != parent else frozenset()


class JobCgroup(Protocol):
    path: Path

    def read(self) -> JobUsage:
        """Current usage; raises OSError once the cgroup is gone."""
        ...
