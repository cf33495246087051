"""The node sampler: reads every node counter once per tick and turns it into per-job intervals.

One `NodeSampler` serves all jobs on a node, so every job's share of an interval is computed from the
same node readings (shares stay consistent and sum to at most the node). A tick happens on the regular
interval and whenever a job starts or stops, so no interval ever straddles a job's start or end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_plugin.config import Config
from slurm_plugin.methods import Method
from slurm_plugin.node import attribution
from slurm_plugin.node.attribution import GpuClaim, JobInterval, NodeInterval, Share
from slurm_plugin.node.counters import EnergyCounter
from slurm_plugin.node.jobenv import JobInfo
from slurm_plugin.node.journal import JournalWriter
from slurm_plugin.sensors import procstat
from slurm_plugin.sensors.base import SensorUnavailable
from slurm_plugin.sensors.cgroup import find_job_cgroup
from slurm_plugin.sensors.cgroup_types import CgroupKey, JobCgroup, JobUsage
from slurm_plugin.sensors.rapl import RaplSensor

MAX_PACKAGE_W = 2000.0  # above any CPU package or DRAM domain: a larger jump is a reset, not energy
MAX_GPU_W = 3000.0
FALLBACK_W_PER_CPU = 4.0  # CodeCarbon's per-thread default when no TDP is known (core/cpu.py)

Log = Callable[[str, str], None]


@dataclass
class JobTracker:
    """One job's sampling state: its cgroup, cumulative CPU baseline, GPUs and journal."""

    info: JobInfo
    start_s: float
    journal: JournalWriter
    claims: list[GpuClaim] = field(default_factory=list)
    cgroup: JobCgroup | None = None
    usage: JobUsage | None = None
    baseline_cpu_s: float | None = 0.0  # None: the next reading is a baseline (after a restart)
    noted: set[str] = field(default_factory=set)
    journaled_cpus: frozenset[int] = frozenset()

    def note(self, text: str, now: float) -> None:
        """Journal a problem once per job, so it reaches the record without flooding the journal."""
        if text not in self.noted:
            self.noted.add(text)
            self.journal.append({"type": "note", "t": now, "text": text})


class NodeSampler:
    def __init__(self, config: Config, log: Log):
        self.config = config
        self.log = log
        self.procfs = config.paths.procfs
        self._stat_path = str(self.procfs / "stat")
        self.rapl = RaplSensor(config.paths.sysfs)
        self.ncpus = procstat.read_ncpus(self.procfs)
        self.mem_total = procstat.read_mem_total_bytes(self.procfs)
        self.max_power_w, self.idle_power_w = self._cpu_power_model()
        self.jobs: dict[str, JobTracker] = {}
        self._rapl_counters = [
            EnergyCounter(1e-6, z.max_energy_range_uj, MAX_PACKAGE_W) for z in self.rapl.zones
        ]
        self._has_packages = any(z.kind == "package" for z in self.rapl.zones)
        self._gpu_counters: dict[str, EnergyCounter] = {}
        self._busy: float | None = None
        self._last_tick: float | None = None
        self._nvml: Any = None
        self._nvml_problem: str | None = None

    def _cpu_power_model(self) -> tuple[float, float]:
        """(TDP, idle power) of the node's CPU packages, for the static share and the estimate."""
        cpu = self.config.cpu
        packages = [z for z in self.rapl.zones if z.kind == "package"]
        count = max(len({z.package for z in packages}), 1)  # sockets, not dies
        if cpu.tdp_w is not None:
            tdp = cpu.tdp_w * count
        elif packages and all(z.tdp_w for z in packages):
            tdp = sum(z.tdp_w or 0.0 for z in packages)
        else:
            tdp = FALLBACK_W_PER_CPU * self.ncpus
        idle = cpu.idle_power_w * count if cpu.idle_power_w is not None else tdp * cpu.idle_fraction_of_tdp
        return tdp, min(idle, tdp)

    def node_info(self) -> dict[str, Any]:
        return {
            "ncpus": self.ncpus,
            "mem_total_bytes": self.mem_total,
            "rapl_zones": [z.channel for z in self.rapl.zones],
            "cpu_tdp_w": self.max_power_w,
            "cpu_idle_power_w": self.idle_power_w,
        }

    # -- jobs ---------------------------------------------------------------------------------

    def add(self, info: JobInfo, start_s: float, journal_path: Path, resumed: str | None) -> float:
        """Start sampling a job: a tick closes the other jobs' interval and is the job's baseline.

        The job's GPUs are resolved first (opening NVML can take a while) and read in that same tick,
        so the baseline of every counter is taken at the same moment.
        """
        gpus, problems = self._resolve_gpus(info)
        claims = [
            GpuClaim(g["uuid"], g.get("parent_uuid") or g["uuid"], float(g.get("share", 1.0))) for g in gpus
        ]
        now = self.tick(baseline_gpus={c.parent_uuid for c in claims})
        sampler = self.config.sampler
        journal = JournalWriter(journal_path, sampler.journal_fsync, sampler.journal_sync_interval_s)
        tracker = JobTracker(info, start_s, journal, claims, baseline_cpu_s=None if resumed else 0.0)
        if resumed:
            journal.append({"type": "resume", "t": now, "reason": resumed})
        else:
            journal.append(
                {
                    "type": "header",
                    "version": 1,
                    "job": info.to_dict(),
                    "start": start_s,
                    "first_sample": now,
                    "gpus": gpus,
                    "node_info": self.node_info(),
                }
            )
        for problem in problems:
            tracker.note(problem, now)
        self.jobs[info.key] = tracker
        return now

    def remove(self, key: str) -> JobTracker | None:
        tracker = self.jobs.pop(key, None)
        if tracker is not None:
            tracker.journal.close()
        return tracker

    def _resolve_gpus(self, info: JobInfo) -> tuple[list[dict[str, Any]], list[str]]:
        if not info.job_gpus and not info.cuda_visible_devices:
            return [], []
        nvml = self._open_nvml()
        if nvml is None:
            return [], [f"job has GPUs but NVML is unavailable: {self._nvml_problem}"]
        devices, problems = nvml.resolve(info.job_gpus, info.cuda_visible_devices)
        described = [
            {
                "uuid": d.uuid,
                "model": d.name,
                "pci_bus_id": d.pci_bus_id,
                "minor": d.minor,
                "parent_uuid": d.parent_uuid,
                "share": d.share,
            }
            for d in devices
        ]
        return described, problems

    def _open_nvml(self) -> Any:
        """NVML is opened on the first job that has GPUs: CPU-only nodes never load it."""
        if self._nvml is None and self._nvml_problem is None:
            from slurm_plugin.sensors.nvml import NvmlSensor

            try:
                self._nvml = NvmlSensor.open(self.config.nvml)
            except SensorUnavailable as exc:
                self._nvml_problem = str(exc)
        return self._nvml

    # -- ticks --------------------------------------------------------------------------------

    def tick(self, now: float | None = None, baseline_gpus: set[str] | frozenset[str] = frozenset()) -> float:
        """Read all counters, close the current interval for every job and journal it."""
        now = time.time() if now is None else now
        previous, self._last_tick = self._last_tick, now
        node = self._read_node(now, None if previous is None else now - previous)
        gpu_energy = self._read_gpus(now, self._tracked_gpus() | baseline_gpus, previous)
        jobs = [self._job_interval(tracker, now) for tracker in self.jobs.values()]
        if node is None or previous is None:
            return now
        shares = attribution.attribute(node, jobs, gpu_energy)
        for job in jobs:
            self._journal_interval(self.jobs[job.key], previous, now, job, shares[job.key])
        return now

    def _read_node(self, now: float, duration: float | None) -> NodeInterval | None:
        try:
            busy_s = procstat.read_busy_s(self._stat_path)
        except (OSError, ValueError) as exc:
            self.log("error", f"cannot read {self.procfs}/stat: {exc}")
            return None
        busy = max(busy_s - self._busy, 0.0) if self._busy is not None else 0.0
        self._busy = busy_s
        packages, drams, unreadable = self._read_rapl(now)
        if duration is None:
            return None
        if not self._has_packages or any(z.kind == "package" for z in unreadable):
            cpu_j: float | None = attribution.estimated_cpu_j(
                duration, busy, self.ncpus, self.idle_power_w, self.max_power_w
            )
            method = Method.ESTIMATED
        else:
            cpu_j = None if None in packages else sum(p or 0.0 for p in packages)
            method = Method.MEASURED
        dram_ok = drams and None not in drams and not any(z.kind == "dram" for z in unreadable)
        return NodeInterval(
            duration_s=duration,
            cpu_j=cpu_j,
            cpu_method=method,
            dram_j=sum(d or 0.0 for d in drams) if dram_ok else None,
            cpu_busy_s=busy,
            ncpus=self.ncpus,
            mem_total_bytes=self.mem_total,
            idle_power_w=self.idle_power_w,
            dram_w_per_gb=self.config.dram.w_per_gb,
        )

    def _read_rapl(self, now: float) -> tuple[list[float | None], list[float | None], list[Any]]:
        """Per-zone deltas for packages and DRAM, and the zones that could not be read."""
        packages: list[float | None] = []
        drams: list[float | None] = []
        unreadable = []
        readings = self.rapl.read()
        for zone, counter, reading in zip(self.rapl.zones, self._rapl_counters, readings, strict=True):
            if reading.value is None:  # the zone could not be read: its status says why
                unreadable.append(zone)
            delta = counter.update(now, reading.value)
            (packages if zone.kind == "package" else drams).append(delta.joules if delta else None)
        return packages, drams, unreadable

    def _tracked_gpus(self) -> set[str]:
        return {claim.parent_uuid for tracker in self.jobs.values() for claim in tracker.claims}

    def _read_gpus(self, now: float, parents: set[str], previous: float | None = None) -> dict[str, Share]:
        """Energy of `parents` since their last reading; the first reading is a baseline."""
        if not parents or self._nvml is None:
            return {}
        energy: dict[str, Share] = {}
        for uuid, reading in self._nvml.read(parents).items():
            counter = self._gpu_counters.get(uuid)
            if counter is None:
                counter = self._gpu_counters[uuid] = EnergyCounter(1e-3, None, MAX_GPU_W)
            power_w = reading.power_mw / 1000 if reading.power_mw is not None else None
            resets = counter.resets
            delta = counter.update(now, reading.energy_mj, power_w)
            if delta is not None:
                energy[uuid] = delta  # a counter's delta is already a Share
            elif counter.resets > resets and previous is not None:
                bridged = self._nvml.power_mw(uuid)  # counter reset (driver reload): integrate power
                if bridged is not None:
                    energy[uuid] = Share(bridged / 1000 * (now - previous), Method.INTEGRATED)
                self._note_gpu(
                    uuid, f"GPU {uuid}: energy counter reset; one interval integrated from power", now
                )
        return energy

    def _note_gpu(self, uuid: str, text: str, now: float) -> None:
        for tracker in self.jobs.values():
            if any(claim.parent_uuid == uuid for claim in tracker.claims):
                tracker.note(text, now)

    def _job_interval(self, tracker: JobTracker, now: float) -> JobInterval:
        info = tracker.info
        if tracker.cgroup is None:
            tracker.cgroup = find_job_cgroup(
                self.config.cgroup,
                self.config.paths.cgroupfs,
                CgroupKey(info.job_id, info.uid, info.node, info.sluid),
            )
        cpu_s = 0.0
        if tracker.cgroup is not None:
            try:
                usage = tracker.cgroup.read()
            except (OSError, ValueError):
                tracker.cgroup = None  # gone at job end: keep the last reading
            else:
                if tracker.baseline_cpu_s is not None:
                    cpu_s = max(usage.cpu_s - tracker.baseline_cpu_s, 0.0)
                tracker.baseline_cpu_s = usage.cpu_s
                tracker.usage = usage
        usage = tracker.usage
        cpus = len(usage.cpus) if usage and usage.cpus else (info.cpus_per_node or 0)
        memory = usage.memory_bytes if usage and tracker.cgroup is not None else 0
        return JobInterval(info.key, cpu_s, cpus, memory, tracker.claims)

    def _journal_interval(
        self, tracker: JobTracker, t0: float, t1: float, job: JobInterval, energy: attribution.JobEnergy
    ) -> None:
        if tracker.usage is None:
            tracker.note("job cgroup not found yet: CPU share is by allocated cores only", t1)
        entry = {
            "type": "interval",
            "t0": round(t0, 4),
            "t1": round(t1, 4),
            "cpu_s": round(job.cpu_s, 4),
            "cpus": job.cpus,
            "mem_b": job.memory_bytes,
            "cpu": _part(energy.cpu),
            "dram": _part(energy.dram),
            "gpu": {uuid: _part(part) for uuid, part in energy.gpus.items()},
        }
        if tracker.usage is not None and tracker.usage.cpus != tracker.journaled_cpus:
            tracker.journaled_cpus = tracker.usage.cpus
            entry["cpuset"] = sorted(tracker.usage.cpus)
        tracker.journal.append(entry)


def _part(part: Share | None) -> list[Any] | None:
    """[joules, method] for the journal; the method is a StrEnum, which JSON writes as its value."""
    return None if part is None else [round(part.joules, 4), part.method]
