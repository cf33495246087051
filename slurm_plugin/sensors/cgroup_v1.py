"""Slurm job cgroups on cgroup v1: `<ctrl>/<prepend>[_<node>]/uid_<U>/job_<J>` per controller.

Layout from src/plugins/cgroup/v1/xcgroup.c; Debian's build prefixes the node name (seen on the test
bed as `slurm_<host>`). Counters from Documentation/admin-guide/cgroup-v1/cpuacct.rst.
"""

from __future__ import annotations

from pathlib import Path

from slurm_plugin.sensors.cgroup_types import CgroupKey, JobUsage, confined, memory_limit
from slurm_plugin.sensors.files import flat_keyed, parse_cpulist, read_int, read_text

CPUACCT_MOUNTS = ("cpuacct", "cpu,cpuacct", "cpuacct,cpu")
CPUSET_FILES = ("cpuset.effective_cpus", "cpuset.cpus")  # the first one present is used


class V1JobCgroup:
    """A job's directories under the cpuacct, memory and cpuset controllers, read once per tick.

    File paths are built once as `str`: the agent reads them for every job on every tick.
    """

    CPUSET_EVERY = 30  # the cpuset of a running job does not change: re-read it now and then

    def __init__(self, cpuacct: Path, memory: Path, cpuset: Path):
        self.path = cpuacct
        self.memory = memory
        self.cpuset = cpuset
        self._usage = str(cpuacct / "cpuacct.usage")
        self._memory_paths = (str(memory / "memory.usage_in_bytes"), str(memory / "memory.stat"))
        self._cpuset_paths = tuple(str(cpuset / name) for name in CPUSET_FILES)
        # Slurm's top directory (<prepend>[_<node>]): a job whose cpuset is the same is not confined.
        self._slurm_cpuset_paths = tuple(str(cpuset.parent.parent / name) for name in CPUSET_FILES)
        self._cpus: frozenset[int] = frozenset()
        self._limit: int | None = None  # memory.limit_in_bytes, re-read with the cpuset
        self._reads = 0

    def read(self) -> JobUsage:
        cpu_ns = read_int(self._usage)
        if self._reads % self.CPUSET_EVERY == 0:
            self._cpus = confined(_read_cpus(self._cpuset_paths), _read_cpus(self._slurm_cpuset_paths))
            self._limit = _limit(str(self.memory / "memory.limit_in_bytes"))
        self._reads += 1
        return JobUsage(cpu_ns / 1e9, _memory(*self._memory_paths), self._cpus, self._limit)


def _read_cpus(paths: tuple[str, ...]) -> frozenset[int]:
    """The first of the cpuset files that exists; empty when Slurm made no cpuset cgroup."""
    for path in paths:
        try:
            return parse_cpulist(read_text(path))
        except FileNotFoundError:
            continue
    return frozenset()


def _limit(path: str) -> int | None:
    """The job's memory limit; None without a memory cgroup or when it is unlimited."""
    try:
        return memory_limit(read_text(path))
    except (FileNotFoundError, ValueError):
        return None


def _memory(usage_path: str, stat_path: str) -> int | None:
    """Memory in use without reclaimable cache; None when Slurm made no memory cgroup for the job."""
    try:
        usage = read_int(usage_path)
        cache = flat_keyed(read_text(stat_path), "total_inactive_file")
    except FileNotFoundError:
        return None
    return max(usage - cache, 0)


def find(cgroupfs: Path, prepend: str, job: CgroupKey) -> V1JobCgroup | None:
    """The job's directories if the cpuacct one exists; both Slurm top-level names are tried."""
    relative = [
        Path(f"{prepend}_{job.node}", f"uid_{job.uid}", f"job_{job.job_id}"),
        Path(prepend, f"uid_{job.uid}", f"job_{job.job_id}"),
    ]
    for rel in relative:
        for mount in CPUACCT_MOUNTS:
            cpuacct = cgroupfs / mount / rel
            if cpuacct.is_dir():
                return V1JobCgroup(cpuacct, cgroupfs / "memory" / rel, cgroupfs / "cpuset" / rel)
    return None
