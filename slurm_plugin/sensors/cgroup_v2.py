"""Slurm job cgroups on cgroup v2: `<slice>/[<node>_]slurmstepd.scope/{job_<J>|<SLUID>}`.

Layout from src/plugins/cgroup/v2/cgroup_v2.c (job_<id> up to 25.11, the SLUID from 26.05 unless
CgroupJobIdPaths=yes); file formats from Documentation/admin-guide/cgroup-v2.rst (cpu.stat in µs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slurm_plugin.sensors.cgroup import JobRef, JobUsage, inactive_file_bytes, parse_cpulist


@dataclass(frozen=True)
class V2JobCgroup:
    path: Path

    def read(self) -> JobUsage:
        usage_us = 0
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                usage_us = int(value)
                break
        current = int((self.path / "memory.current").read_text())
        cache = inactive_file_bytes((self.path / "memory.stat").read_text(), "inactive_file")
        return JobUsage(usage_us / 1e6, max(current - cache, 0), self._cpus())

    def _cpus(self) -> frozenset[int]:
        try:
            return parse_cpulist((self.path / "cpuset.cpus.effective").read_text())
        except FileNotFoundError:
            return frozenset()


def find(cgroupfs: Path, slice_name: str, job: JobRef) -> V2JobCgroup | None:
    """The job's directory under either scope name, by job id or SLUID."""
    names = [f"job_{job.job_id}"] + ([job.sluid] if job.sluid else [])
    for scope in (f"{job.node}_slurmstepd.scope", "slurmstepd.scope"):
        for name in names:
            path = cgroupfs / slice_name / scope / name
            if path.is_dir():
                return V2JobCgroup(path)
    return None
