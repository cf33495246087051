"""The node sampler: reads every node counter once per tick and turns it into per-job intervals.

One `NodeSampler` serves all jobs on a node, so every job's share of an interval is computed from the
same node readings (shares stay consistent and sum to at most the node). A tick happens on the regular
interval and whenever a job starts or stops, so no interval ever straddles a job's start or end.

A hook waits only for the node and cgroup part of its tick: the GPU readings of that tick, and a new
job's GPUs (opening NVML can take a while), follow in `settle`, which the agent calls once it has
answered. They are moved back to the tick's time by the power read with them (`_read_gpus`). GPU
energy is counter-anchored (`gpu_energy`): a job's intervals wait in its tracker until the anchor
after them has made their GPU parts final, then go to the journal.

Every estimate the sampler falls back to (no RAPL, an unreadable counter, no DRAM zone, no NVML, no
job cgroup, a MIG slice's share) is noted in the job's record and logged once per job, never per tick.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from slurm_plugin.config import Config
from slurm_plugin.methods import Method
from slurm_plugin.node import attribution
from slurm_plugin.node.attribution import GpuClaim, JobInterval, NodeInterval, Share
from slurm_plugin.node.counters import EnergyCounter
from slurm_plugin.node.cpu_power import FALLBACK_W_PER_CPU, cpu_power_model
from slurm_plugin.node.gpu_energy import GpuTrack
from slurm_plugin.node.gpu_reads import NvmlSession
from slurm_plugin.node.jobenv import JobInfo
from slurm_plugin.node.journal import JournalWriter
from slurm_plugin.node.journal import end_line as journal_end_line
from slurm_plugin.node.ledger import NodeLedger
from slurm_plugin.node.tracker import COMPONENTS, JobTracker, Tick
from slurm_plugin.sensors import procstat
from slurm_plugin.sensors.cgroup import find_job_cgroup
from slurm_plugin.sensors.cgroup_types import CgroupKey, JobUsage
from slurm_plugin.sensors.rapl import RaplSensor, RaplZone

MAX_PACKAGE_W = 2000.0  # above any CPU package or DRAM domain: a larger jump is a reset, not energy
LOG_EVERY_S = 60.0  # a journal the disk refuses is logged at most this often per job
STALE_ANCHORS = 10  # a GPU not anchored for this many counter intervals no longer holds the node ledger

Log = Callable[[str, str], None]


class NodeSampler:
    def __init__(self, config: Config, log: Log):
        self.config = config
        self.log = log
        self.procfs = config.paths.procfs
        self._stat_path = str(self.procfs / "stat")
        self.rapl = RaplSensor(config.paths.sysfs)
        self.ncpus = procstat.read_ncpus(self.procfs)
        self.mem_total = procstat.read_mem_total_bytes(self.procfs)
        power = cpu_power_model(config.cpu, self.rapl.zones, self.ncpus)
        self.max_power_w, self.idle_power_w = power.tdp_w, power.idle_w
        self.jobs: dict[str, JobTracker] = {}
        self._has_packages = any(z.kind == "package" for z in self.rapl.zones)
        self.node_notes = self._fallbacks(power.tdp_from)
        self._tick_problems: list[str] = []  # this tick's readings that failed, noted on every job
        self._rapl_counters = [
            EnergyCounter(1e-6, z.max_energy_range_uj, MAX_PACKAGE_W) for z in self.rapl.zones
        ]
        self._gpus: dict[str, GpuTrack] = {}
        self._unsettled: list[JobTracker] = []  # added jobs whose GPUs and header wait for `settle`
        self._deferred: tuple[Tick, set[str]] | None = None  # a hook's tick, its GPUs not read yet
        self._busy: float | None = None
        self._last_tick: float | None = None
        self.nvml = NvmlSession(config.nvml, log)
        self._awaiting_nvml: list[JobTracker] = []  # GPU jobs that started while NVML was down
        self.energy_j = dict.fromkeys(COMPONENTS, 0.0)  # the node's since this sampler started
        self.sensors_ok: dict[str, bool] = {"procstat": True, "rapl": bool(self.rapl.zones)}
        self.ledger: NodeLedger | None = None  # the node ledger the agent keeps, fed every tick
        self._all_gpus: set[str] = (
            set()
        )  # every GPU of the node, read with or without a job (`watch_all_gpus`)

    def _fallbacks(self, tdp_from: str) -> list[str]:
        """The node's standing estimates, noted in every job's record."""
        notes = []
        if not self._has_packages:
            tdp_source = tdp_from  # without package zones, "cpu.tdp_w" or "fallback"
            if tdp_from == "fallback":
                tdp_source = f"{FALLBACK_W_PER_CPU:g} W per CPU for {self.ncpus} CPUs, cpu.tdp_w not set"
            why = self.rapl.absent_reason or "no RAPL package zone"
            notes.append(
                f"CPU energy estimated from utilisation between {self.idle_power_w:g} W idle and a "
                f"{self.max_power_w:g} W TDP ({tdp_source}): {why}"
            )
        if not any(z.kind == "dram" for z in self.rapl.zones):
            notes.append(
                f"DRAM energy estimated at {self.config.dram.w_per_gb:g} W per GB of the job's memory "
                "(its limit, else what it uses): "
                "no RAPL DRAM zone"
            )
        return notes

    def node_info(self) -> dict[str, Any]:
        return {
            "ncpus": self.ncpus,
            "mem_total_bytes": self.mem_total,
            "rapl_zones": [z.channel for z in self.rapl.zones],
            "cpu_tdp_w": self.max_power_w,
            "cpu_idle_power_w": self.idle_power_w,
        }

    # -- jobs ---------------------------------------------------------------------------------

    def add(
        self, info: JobInfo, start_s: float, journal_path: Path, resumed: str | None, now: float | None = None
    ) -> float:
        """Start sampling a job from the tick at `now` (a new, hook-style tick if None): that tick
        closes the other jobs' interval and is the job's baseline. Its GPUs, header and GPU baseline
        come in `settle`, so a prolog never waits for NVML."""
        now = self.tick(defer_gpus=True) if now is None else now
        sampler = self.config.sampler
        journal = JournalWriter(journal_path, sampler.journal_fsync, sampler.journal_sync_interval_s)
        tracker = JobTracker(info, start_s, journal, now, resumed, baseline_cpu_s=None if resumed else 0.0)
        self.jobs[info.key] = tracker
        self._unsettled.append(tracker)
        return now

    def remove(self, key: str, ended: float | None = None) -> list[bytes]:
        """Stop sampling a job: what it still holds back goes to the journal (settled or not), closed
        with its end line when the job `ended` then. Returns the lines the disk did not take."""
        tracker = self.jobs.pop(key, None)
        if tracker is None:
            return []
        self._flush(tracker, force=True)
        if ended is not None:
            tracker.journal.append(journal_end_line(ended))
        for uuid in set(self._gpus) - self._tracked_gpus():
            del self._gpus[uuid]  # a later job on it starts from a fresh baseline
        self._fold_ledger()
        return tracker.journal.close()

    def settle(self) -> None:
        """What the hooks did not wait for: new jobs' GPUs and headers, and the deferred tick's GPU
        readings with the counter of every GPU whose job starts or stops (its anchor)."""
        deferred, self._deferred = self._deferred, None
        anchors = set() if deferred is None else deferred[1]
        for tracker in self._unsettled:
            anchors |= self._settle_job(tracker)
        self._unsettled.clear()
        if self._awaiting_nvml:
            anchors |= self._late_gpus(time.time())
        if deferred is not None:
            self._read_gpus(deferred[0], anchors)
        for tracker in self.jobs.values():
            self._flush(tracker)
        self._fold_ledger()

    def _fold_ledger(self) -> None:
        """Hand the ledger the ticks whose GPU parts are final and whose job lines are all journaled."""
        if self.ledger is not None:
            held = [tracker.pending[0][0].time for tracker in self.jobs.values() if tracker.pending]
            stale = time.time() - STALE_ANCHORS * self.config.nvml.counter_interval_s
            self.ledger.fold(self._final, min(held, default=math.inf), stale)

    def _settle_job(self, tracker: JobTracker) -> set[str]:
        """Resolve the job's GPUs and write its header (or resume line); return its GPUs to anchor."""
        now = tracker.first_sample
        gpus, problems = self._resolve_gpus(tracker.info, now)
        tracker.claims = _claims(gpus)
        if self.nvml.sensor is None and (tracker.info.job_gpus or tracker.info.cuda_visible_devices):
            self._awaiting_nvml.append(tracker)
        if tracker.resumed:
            tracker.journal.append({"type": "resume", "t": now, "reason": tracker.resumed})
        else:
            tracker.journal.append(
                {
                    "type": "header",
                    "version": 1,
                    "job": tracker.info.to_dict(),
                    "start": tracker.start_s,
                    "first_sample": now,
                    "gpus": gpus,
                    "gpu_idle_util_pct": self.config.advice.gpu_idle_util_pct,  # the waste rule's
                    "node_info": self.node_info(),
                }
            )
        for text in self.node_notes:
            self._note(tracker, text, now, "info")
        for problem in problems:
            self._note(tracker, problem, now)
        for claim in tracker.claims:
            if claim.share < 1.0:
                text = f"GPU {claim.uuid}: estimated as its share ({claim.share:g}) of the whole GPU's energy"
                self._note(tracker, text, now, "info")
        return {claim.parent_uuid for claim in tracker.claims}

    def _note(self, tracker: JobTracker, text: str, now: float, level: str = "warning") -> None:
        """A note in the job's record, and one log line per job and agent, however often it recurs."""
        if tracker.note(text, now):
            self.log(level, f"job {tracker.info.key}: {text}")

    def _late_gpus(self, now: float) -> set[str]:
        """Once a retry opens NVML, the GPUs of the jobs that started while it was down; the time
        before is noted as a gap in their GPU energy. Returns the GPUs to anchor."""
        self._awaiting_nvml = [t for t in self._awaiting_nvml if self.jobs.get(t.info.key) is t]
        if not self._awaiting_nvml or self.nvml.open(now) is None:
            return set()
        anchors: set[str] = set()
        for tracker in self._awaiting_nvml:
            gpus, problems = self._resolve_gpus(tracker.info, now)
            tracker.claims = _claims(gpus)  # a new list: the intervals queued before keep none
            tracker.journal.append({"type": "gpus", "t": now, "gpus": gpus})
            self._note(
                tracker,
                f"NVML opened {now - tracker.start_s:.0f} s after the job started: "
                "its GPU energy before then is not measured",
                now,
            )
            for problem in problems:
                self._note(tracker, problem, now)
            anchors |= {claim.parent_uuid for claim in tracker.claims}
        self._awaiting_nvml = []
        return anchors

    def _resolve_gpus(self, info: JobInfo, now: float) -> tuple[list[dict[str, Any]], list[str]]:
        found = self.nvml.resolve(info, now)
        if info.job_gpus or info.cuda_visible_devices:
            self.sensors_ok["nvml"] = self.nvml.sensor is not None
        return found

    # -- ticks --------------------------------------------------------------------------------

    def tick(
        self, now: float | None = None, defer_gpus: bool = False, anchor_for: Collection[str] = ()
    ) -> float:
        """Read all counters, close the current interval for every job and queue it for the journal.

        `defer_gpus` (a hook's tick) leaves the GPU readings to `settle`; the GPUs of the jobs in
        `anchor_for` (stopping) get their energy counter read, so their totals end exact.
        """
        self.settle()
        now = time.time() if now is None else now
        previous, self._last_tick = self._last_tick, now
        node = self._read_node(now, None if previous is None else now - previous)
        tick = Tick(now, [self._job_interval(tracker, now) for tracker in self.jobs.values()])
        for text in self._tick_problems:
            for tracker in self.jobs.values():
                self._note(tracker, text, now)
        ending = [self.jobs[key] for key in anchor_for if key in self.jobs]
        stopping = {claim.parent_uuid for tracker in ending for claim in tracker.claims}
        if defer_gpus:
            self._deferred = (tick, stopping)
        else:
            self._read_gpus(tick, stopping)
        if self.ledger is not None and previous is not None:
            self.ledger.node_tick(previous, now, node, tick.gpu_energy)
        if node is not None and previous is not None:
            shares = attribution.attribute(node, tick.jobs, {})  # GPU parts when final (`_flush`)
            for job in tick.jobs:
                entry = self._interval_entry(self.jobs[job.key], previous, now, job, shares[job.key])
                self.jobs[job.key].pending.append((tick, job, entry))
        if not defer_gpus:
            for tracker in self.jobs.values():
                self._flush(tracker)
            self._fold_ledger()
        return now

    def _read_node(self, now: float, duration: float | None) -> NodeInterval | None:
        """The node's interval up to `now`; what could not be read goes to `_tick_problems`."""
        self._tick_problems = []
        try:
            busy_s = procstat.read_busy_s(self._stat_path)
        except (OSError, ValueError) as exc:
            self._tick_problems.append(f"not measured while {self._stat_path} could not be read: {exc}")
            self.sensors_ok["procstat"] = False
            return None
        self.sensors_ok["procstat"] = True
        busy = max(busy_s - self._busy, 0.0) if self._busy is not None else 0.0
        self._busy = busy_s
        packages, drams, unreadable = self._read_rapl(now)
        self.sensors_ok["rapl"] = bool(self.rapl.zones) and not unreadable
        for zone, reason in unreadable:
            what = "CPU" if zone.kind == "package" else "DRAM"
            self._tick_problems.append(f"{what} energy estimated while RAPL could not be read: {reason}")
        unreadable_kinds = {zone.kind for zone, _ in unreadable}
        if duration is None:
            return None
        if not self._has_packages or "package" in unreadable_kinds:
            cpu_j: float | None = attribution.estimated_cpu_j(
                duration, busy, self.ncpus, self.idle_power_w, self.max_power_w
            )
            method = Method.ESTIMATED
        else:
            cpu_j = None if None in packages else sum(p or 0.0 for p in packages)
            method = Method.MEASURED
        dram_ok = drams and None not in drams and "dram" not in unreadable_kinds
        self.energy_j["cpu"] += cpu_j or 0.0
        self.energy_j["dram"] += sum(d or 0.0 for d in drams) if dram_ok else 0.0
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
            dram_static_fraction=self.config.dram.static_fraction,
        )

    def _read_rapl(
        self, now: float
    ) -> tuple[list[float | None], list[float | None], list[tuple[RaplZone, str]]]:
        """Per-zone deltas for packages and DRAM, and the zones that could not be read, with why."""
        packages: list[float | None] = []
        drams: list[float | None] = []
        unreadable = []
        readings = self.rapl.read()
        for zone, counter, reading in zip(self.rapl.zones, self._rapl_counters, readings, strict=True):
            if reading.value is None:  # the zone could not be read: its status says why
                unreadable.append((zone, reading.reason))
            delta = counter.update(now, reading.value)
            (packages if zone.kind == "package" else drams).append(delta.joules if delta else None)
        return packages, drams, unreadable

    def _tracked_gpus(self) -> set[str]:
        return self._all_gpus | {
            claim.parent_uuid for tracker in self.jobs.values() for claim in tracker.claims
        }

    def watch_all_gpus(self) -> None:
        """Read every GPU of the node on every tick, not only those jobs hold: a resident agent's node
        ledger then has the idle GPUs too. NVML is opened now, on nodes that have it (the nvidia kernel
        module loaded, or `nvml.library` set), so a CPU-only node never loads it."""
        module = self.config.paths.sysfs / "module" / "nvidia"
        if not self.config.nvml.enabled or (self.config.nvml.library is None and not module.is_dir()):
            return
        nvml = self.nvml.open(time.time())
        if nvml is not None:
            self._all_gpus = {device.uuid for device in nvml.devices()}
            self.sensors_ok["nvml"] = True

    def _read_gpus(self, tick: Tick, anchors: set[str]) -> None:
        """Power, utilisation and memory of every tracked GPU; the counter where an anchor is due or
        asked for (`anchors`)."""
        parents = self._tracked_gpus()
        if not parents or self.nvml.sensor is None:
            return
        every_s = self.config.nvml.counter_interval_s
        for uuid in parents:
            track = self._gpus.get(uuid)
            if track is None:
                track = self._gpus[uuid] = GpuTrack()
            read = self.nvml.read(uuid, tick.time, uuid in anchors or track.due(tick.time, every_s))
            if read.no_counter:
                track.drop_counter(tick.time)  # pre-Volta: integrate power from now on
                self._note_gpu(uuid, f"GPU {uuid} has no energy counter: integrated from power", tick.time)
            tick.gpu_use[uuid] = [read.util_pct, read.mem_mib]
            counted = track.total_j
            power_w = read.power_mw / 1000 if read.power_mw is not None else None
            step = track.step(tick.time, power_w, read.energy_mj)
            self.energy_j["gpu"] += track.total_j - counted
            if step.part is not None:
                tick.gpu_energy[uuid] = step.part
            if step.reset:
                text = f"GPU {uuid}: energy counter reset; its energy since the previous counter reading "
                self._note_gpu(uuid, text + "integrated from power", tick.time)

    def _final(self, uuid: str, time_s: float) -> bool:
        track = self._gpus.get(uuid)
        return track is None or (track.anchored_until is not None and track.anchored_until >= time_s)

    def _flush(self, tracker: JobTracker, force: bool = False) -> None:
        """Journal the tracker's intervals whose GPU parts are final (all of them when `force`)."""
        pending = tracker.pending
        while pending:
            tick, job, entry = pending[0]
            if not force and not all(self._final(claim.parent_uuid, tick.time) for claim in job.gpus):
                return
            parts = tick.gpu_parts(job, functools.partial(self._final, time_s=tick.time))
            entry["gpu"] = {uuid: _part(part) for uuid, part in parts.items()}
            use = _gpu_use(tick, job)
            if use:
                entry["gpu_use"] = use
            tracker.journal.append(entry)
            tracker.count(entry)
            if self.ledger is not None:
                self.ledger.job_line(tracker.info.key, entry)
            pending.popleft()
        self._journal_refused(tracker)

    def _journal_refused(self, tracker: JobTracker) -> None:
        """Lines the disk refused wait in memory (JournalWriter); say so at most once a minute."""
        error, now = tracker.journal.error, time.monotonic()
        if error is not None and (
            tracker.journal_logged is None or now - tracker.journal_logged >= LOG_EVERY_S
        ):
            tracker.journal_logged = now
            self.log(
                "error", f"job {tracker.info.key}: cannot write its journal, lines kept in memory: {error}"
            )

    def _note_gpu(self, uuid: str, text: str, now: float) -> None:
        for tracker in self.jobs.values():
            if any(claim.parent_uuid == uuid for claim in tracker.claims):
                self._note(tracker, text, now)

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
                reading = tracker.cgroup.read()
            except (OSError, ValueError):
                tracker.cgroup = None  # gone at job end: keep the last reading
            else:
                if tracker.baseline_cpu_s is not None:
                    cpu_s = max(reading.cpu_s - tracker.baseline_cpu_s, 0.0)
                tracker.baseline_cpu_s = reading.cpu_s
                tracker.usage = reading
        usage = tracker.usage
        cpus = len(usage.cpus) if usage and usage.cpus else (info.cpus_per_node or 0)
        memory = usage.memory_bytes if usage and tracker.cgroup is not None else 0
        limit = usage.memory_limit_bytes if usage else None
        return JobInterval(info.key, cpu_s, cpus, memory or 0, tracker.claims, limit)

    def _note_usage(self, tracker: JobTracker, usage: JobUsage, now: float) -> None:
        """Say once where the job's cgroup lacks what attribution uses, and what stands in for it."""
        if not usage.cpus:
            count = tracker.info.cpus_per_node
            self._note(
                tracker,
                "the job's cpuset does not confine it (ConstrainCores=no): "
                + (
                    f"its {count} allocated CPUs are Slurm's (SLURM_JOB_CPUS_PER_NODE)"
                    if count is not None
                    else "its allocated CPUs are unknown, so it gets no static CPU power"
                ),
                now,
            )
        if usage.memory_bytes is None:
            self._note(
                tracker, "the job's cgroup has no memory controller: memory and DRAM share unavailable", now
            )

    def _interval_entry(
        self, tracker: JobTracker, t0: float, t1: float, job: JobInterval, energy: attribution.JobEnergy
    ) -> dict[str, Any]:
        """The journal line of one interval; its "gpu" is filled when its GPU parts are final."""
        if tracker.usage is None:
            self._note(tracker, "job cgroup not found yet: CPU share is by allocated cores only", t1)
        else:
            self._note_usage(tracker, tracker.usage, t1)
        entry = {
            "type": "interval",
            "t0": round(t0, 4),
            "t1": round(t1, 4),
            "cpu_s": round(job.cpu_s, 4),
            "cpus": job.cpus,
            "mem_b": job.memory_bytes,
            "cpu": _part(energy.cpu),
            "dram": _part(energy.dram),
            "gpu": None,
        }
        if tracker.usage is not None and tracker.usage.cpus != tracker.journaled_cpus:
            tracker.journaled_cpus = tracker.usage.cpus
            entry["cpuset"] = sorted(tracker.usage.cpus)
        return entry


def _claims(gpus: list[dict[str, Any]]) -> list[GpuClaim]:
    """The claims of a job's resolved GPUs (`_resolve_gpus`) on their physical GPUs."""
    return [GpuClaim(g["uuid"], g.get("parent_uuid") or g["uuid"], float(g.get("share", 1.0))) for g in gpus]


def _gpu_use(tick: Tick, job: JobInterval) -> dict[str, list[int | None]]:
    """[util %, memory MiB] of the job's whole GPUs at the tick; a MIG slice has none, since its parent's
    figures are the whole GPU's (docs/record.md)."""
    return {
        claim.uuid: tick.gpu_use[claim.uuid]
        for claim in job.gpus
        if claim.uuid == claim.parent_uuid and claim.uuid in tick.gpu_use
    }


def _part(part: Share | None) -> list[Any] | None:
    """[joules, method] for the journal; the method is a StrEnum, which JSON writes as its value."""
    return None if part is None else [round(part.joules, 4), part.method]
