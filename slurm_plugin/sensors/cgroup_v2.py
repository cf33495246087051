"""Slurm job cgroups on cgroup v2: `<slice>/[<node>_]slurmstepd.scope/{job_<J>|<SLUID>}`.

Layout from src/plugins/cgroup/v2/cgroup_v2.c (job_<id> up to 25.11, the SLUID from 26.05 unless
CgroupJobIdPaths=yes); file formats from Documentation/admin-guide/cgroup-v2.rst (cpu.stat in µs).
"""

from __future__ import annotations

from pathlib import Path

from slurm_plugin.sensors.cgroup_types import CgroupKey, JobUsage, confined, memory_limit
from slurm_plugin.sensors.files import flat_keyed, parse_cpulist, read_int, read_text


class V2JobCgroup:
    """A job's cgroup directory; file paths are built once as `str`, as they are read every tick.

    Its cpuset is compared with the scope's (its parent's), read once: equal, the job is not confined
    to its CPUs (ConstrainCores=no) and the CPUs Slurm allocated come from Slurm instead.
    """

    def __init__(self, path: Path):
        self.path = path
        self._cpu_stat = str(path / "cpu.stat")
        self._memory_current = str(path / "memory.current")
        self._memory_stat = str(path / "memory.stat")
        self._cpuset = str(path / "cpuset.cpus.effective")
        self._scope_cpus: frozenset[int] | None = None
        self._limit: tuple[int | None] | None = None  # memory.max, read once: Slurm sets it at start

    def read(self) -> JobUsage:
        usage_us = flat_keyed(read_text(self._cpu_stat), "usage_usec")
        if self._limit is None:
            self._limit = (_limit(str(self.path / "memory.max")),)
        return JobUsage(usage_us / 1e6, self._memory(), self._cpus(), self._limit[0])

    def _memory(self) -> int | None:
        """None when the memory controller is not enabled for the job's subtree (no memory.* files)."""
        try:
            current = read_int(self._memory_current)
        except FileNotFoundError:
            if not self.path.is_dir():
                raise  # the job's cgroup is gone, not its memory controller
            return None
        return max(current - flat_keyed(read_text(self._memory_stat), "inactive_file"), 0)

    def _cpus(self) -> frozenset[int]:
        if self._scope_cpus is None:
            self._scope_cpus = _cpuset(str(self.path.parent / "cpuset.cpus.effective"))
        return confined(_cpuset(self._cpuset), self._scope_cpus)


def _limit(path: str) -> int | None:
    """The job's memory limit; None where the memory controller is off for it or no limit is set."""
    try:
        return memory_limit(read_text(path))
    except (FileNotFoundError, ValueError):
        return None


def _cpuset(path: str) -> frozenset[int]:
    try:
        return parse_cpulist(read_text(path))
    except FileNotFoundError:
        return frozenset()


def find(cgroupfs: Path, slice_name: str, job: CgroupKey) -> V2JobCgroup | None:
    """The job's directory under either scope name, by job id or SLUID."""
    names = [f"job_{job.job_id}"] + ([job.sluid] if job.sluid else [])
    for scope in (f"{job.node}_slurmstepd.scope", "slurmstepd.scope"):
        for name in names:
            path = cgroupfs / slice_name / scope / name
            if path.is_dir():
                return V2JobCgroup(path)
    return None
