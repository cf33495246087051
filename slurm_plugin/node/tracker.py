"""A job's sampling state on the node (`JobTracker`) and one tick's readings kept until the GPU anchor
after them makes the job's GPU parts final (`Tick`): the sampler's state, which the agent's records and
metrics also read."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slurm_plugin.node import attribution
from slurm_plugin.node.attribution import GpuClaim, JobInterval, Share
from slurm_plugin.node.jobenv import JobInfo
from slurm_plugin.node.journal import JournalWriter
from slurm_plugin.sensors.cgroup_types import JobCgroup, JobUsage

COMPONENTS = ("cpu", "dram", "gpu")


@dataclass(slots=True)
class Tick:
    """One tick's jobs and per-GPU parts, kept while some job's interval waits for a GPU anchor."""

    time: float
    jobs: list[JobInterval]
    gpu_energy: dict[str, Share] = field(default_factory=dict)
    gpu_use: dict[str, list[int | None]] = field(default_factory=dict)  # [util %, memory MiB]
    shares: dict[str, dict[str, Share]] | None = None

    def gpu_parts(self, job: JobInterval, final: Callable[[str], bool]) -> dict[str, Share]:
        """The job's GPU parts; shared across jobs once every GPU of the tick is final."""
        if self.shares is None and all(final(uuid) for uuid in self.gpu_energy):
            self.shares = attribution.gpu_shares(self.jobs, self.gpu_energy)
        if self.shares is not None:
            return self.shares[job.key]
        parents = {claim.parent_uuid for claim in job.gpus}
        own = {uuid: part for uuid, part in self.gpu_energy.items() if uuid in parents}
        return attribution.gpu_shares(self.jobs, own)[job.key]


@dataclass
class JobTracker:
    """One job's sampling state: its cgroup, cumulative CPU baseline, GPUs and journal."""

    info: JobInfo
    start_s: float
    journal: JournalWriter
    first_sample: float
    resumed: str | None = None
    claims: list[GpuClaim] = field(default_factory=list)
    cgroup: JobCgroup | None = None
    usage: JobUsage | None = None
    baseline_cpu_s: float | None = 0.0  # None: the next reading is a baseline (after a restart)
    noted: set[str] = field(default_factory=set)
    journaled_cpus: frozenset[int] = frozenset()
    pending: deque[tuple[Tick, JobInterval, dict[str, Any]]] = field(default_factory=deque)
    journal_logged: float | None = None  # time.monotonic() of the last "cannot write its journal"
    energy_j: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    gpu_j: dict[str, float] = field(default_factory=dict)  # per GPU (or MIG) UUID
    cpu_s: float = 0.0

    def count(self, entry: dict[str, Any]) -> None:
        """Add a journaled interval to the job's running totals (the metrics' counters): the same
        figures the record sums, so a finished job's counter ends at its record's energy."""
        self.cpu_s += entry["cpu_s"]
        for component in ("cpu", "dram"):
            if entry[component] is not None:
                self.energy_j[component] += entry[component][0]
        for uuid, part in (entry["gpu"] or {}).items():
            if part is not None:
                self.energy_j["gpu"] += part[0]
                self.gpu_j[uuid] = self.gpu_j.get(uuid, 0.0) + part[0]

    def note(self, text: str, now: float) -> bool:
        """Journal a problem once per job, so it reaches the record without flooding the journal;
        True the first time."""
        if text in self.noted:
            return False
        self.noted.add(text)
        self.journal.append({"type": "note", "t": now, "text": text})
        return True
