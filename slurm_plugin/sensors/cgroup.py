"""Find a Slurm job's cgroup and read its CPU time, memory and cpuset, for cgroup v1 and v2.

The job cgroup is created by slurmstepd after the prolog and removed before the epilog
(src/slurmd/slurmd/req.c, src/plugins/cgroup/v2/cgroup_v2.c), so callers poll `find_job_cgroup`
until it appears and keep the last reading once `read` fails.
"""

from __future__ import annotations

from pathlib import Path

from slurm_plugin.config import Cgroup
from slurm_plugin.sensors import cgroup_v1, cgroup_v2
from slurm_plugin.sensors.base import Probe, Status
from slurm_plugin.sensors.cgroup_types import CgroupKey, JobCgroup


def detect_version(cgroupfs: Path) -> str | None:
    """ "v2" for a unified hierarchy, "v1" for per-controller mounts, None when neither is there."""
    if (cgroupfs / "cgroup.controllers").is_file():
        return "v2"
    if (cgroupfs / "cpuacct").is_dir() or (cgroupfs / "cpu,cpuacct").is_dir():
        return "v1"
    return None


def find_job_cgroup(settings: Cgroup, cgroupfs: Path, job: CgroupKey) -> JobCgroup | None:
    """The job's cgroup if it exists now, for the configured or detected cgroup version."""
    version = settings.version if settings.version != "auto" else detect_version(cgroupfs)
    if version == "v1":
        return cgroup_v1.find(cgroupfs, settings.v1_prepend, job)
    if version == "v2":
        return cgroup_v2.find(cgroupfs, settings.v2_slice, job)
    return None


class CgroupSensor:
    """The node's cgroup hierarchy as `jobcarbon doctor` sees it; jobs are read via `find_job_cgroup`."""

    name = "cgroup"

    def __init__(self, settings: Cgroup, cgroupfs: Path):
        self.settings = settings
        self.cgroupfs = Path(cgroupfs)

    def probe(self) -> Probe:
        root, wanted = self.cgroupfs, self.settings.version
        detected = detect_version(root)
        if detected is None:
            return Probe(Status.ABSENT, f"{root}: neither a cgroup v2 nor a v1 cpuacct hierarchy")
        if wanted != "auto" and wanted != detected:
            return Probe(Status.ERROR, f"configured {wanted} but {root} is {detected}")
        if detected == "v2":
            base = root / self.settings.v2_slice
            found = sorted(p.name for p in base.glob("*slurmstepd.scope")) if base.is_dir() else []
        else:
            found = sorted(p.name for p in (root / "cpuacct").glob(f"{self.settings.v1_prepend}*"))
        where = ", ".join(found) or "no Slurm directory yet (created by slurmstepd at the first job)"
        return Probe(Status.OK, f"{detected} at {root}; {where}")

    def close(self) -> None:
        """Nothing is held: every read opens its file afresh."""
