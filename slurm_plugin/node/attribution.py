"""Attribution policy: how one interval of node energy is split between the jobs running on the node.

Pure functions of their inputs, no I/O; the policy and a worked example are in docs/attribution.md.
Whatever the inputs, no job gets a negative share and the jobs together never get more than the node
measured: the unattributed remainder (idle cores, system processes) stays with the node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from slurm_plugin.methods import Method
from slurm_plugin.node.counters import EnergyDelta

GIB = 1024**3


# Not frozen: built on every tick, and a frozen dataclass sets each field through object.__setattr__.
@dataclass(slots=True)
class NodeInterval:
    """Node-level measurements over one interval; energy is None where nothing could be measured."""

    duration_s: float
    cpu_j: float | None
    cpu_method: Method  # MEASURED (RAPL counters) or ESTIMATED (TDP x utilisation model)
    dram_j: float | None
    cpu_busy_s: float  # CPU seconds the whole node spent busy (/proc/stat)
    ncpus: int
    mem_total_bytes: int
    idle_power_w: float  # static CPU package power of the whole node
    dram_w_per_gb: float = 0.3725
    dram_static_fraction: float = 0.5  # the DRAM energy split by memory held (dram.static_fraction)


# Not frozen: built on every tick, and a frozen dataclass sets each field through object.__setattr__.
@dataclass(slots=True)
class JobInterval:
    """What one job did over the same interval, from its cgroup."""

    key: str
    cpu_s: float
    cpus: int
    memory_bytes: int  # in use (less reclaimable cache)
    gpus: Sequence[GpuClaim] = ()
    memory_limit_bytes: int | None = None  # what it holds: its cgroup's limit; None when unlimited

    def memory_held(self, mem_total_bytes: int) -> int:
        """What the job holds: its limit (at most the node's memory), never less than what it uses."""
        used = max(self.memory_bytes, 0)
        if self.memory_limit_bytes is None or self.memory_limit_bytes <= 0:
            return used
        return max(used, min(self.memory_limit_bytes, mem_total_bytes) if mem_total_bytes > 0 else used)


@dataclass(frozen=True, slots=True)
class GpuClaim:
    """A job's claim on a physical GPU: the whole device (share 1) or a MIG slice (share < 1)."""

    uuid: str  # the job's device: a GPU UUID or a MIG id
    parent_uuid: str  # the physical GPU whose counter is read
    share: float = 1.0


# A job's share of an interval's energy and how it was obtained (not a "part", which is a job's record on
# one node): a counter's delta is one, so a measured GPU's delta is passed through as its share rather
# than copied into another object on every tick.
Share = EnergyDelta


@dataclass(slots=True)
class JobEnergy:
    cpu: Share | None = None
    dram: Share | None = None
    gpus: dict[str, Share] = field(default_factory=dict)


def attribute(
    node: NodeInterval, jobs: Sequence[JobInterval], gpu_energy: Mapping[str, Share]
) -> dict[str, JobEnergy]:
    """Split one interval's node energy between `jobs`; `gpu_energy` is per physical GPU UUID."""
    exclusive = len(jobs) == 1 and jobs[0].cpus >= node.ncpus
    cpus = cpu_shares(node, jobs, exclusive)
    drams = dram_shares(node, jobs, exclusive)
    gpus = gpu_shares(jobs, gpu_energy)
    return {
        job.key: JobEnergy(cpu, dram, gpus[job.key]) for job, cpu, dram in zip(jobs, cpus, drams, strict=True)
    }


def cpu_shares(node: NodeInterval, jobs: Sequence[JobInterval], exclusive: bool) -> list[Share | None]:
    """Static power by allocated cores, the rest by the job's share of node CPU time."""
    if node.cpu_j is None:
        return [None] * len(jobs)
    total = max(node.cpu_j, 0.0)
    if exclusive:
        return [Share(total, node.cpu_method)]
    method = Method.APPORTIONED if node.cpu_method == Method.MEASURED else node.cpu_method
    static = min(node.idle_power_w * node.duration_s, total)
    dynamic = total - static
    cores = max(node.ncpus, sum(job.cpus for job in jobs), 1)
    busy = max(node.cpu_busy_s, sum(max(job.cpu_s, 0.0) for job in jobs))
    shares: list[Share | None] = []
    for job in jobs:
        static_share = static * job.cpus / cores
        dynamic_share = dynamic * max(job.cpu_s, 0.0) / busy if busy > 0 else 0.0
        shares.append(Share(static_share + dynamic_share, method))
    return shares


def dram_shares(node: NodeInterval, jobs: Sequence[JobInterval], exclusive: bool) -> list[Share | None]:
    """Measured DRAM energy: a static part by memory held, the rest by memory in use; without a DRAM
    counter, a W-per-GB estimate on the memory held (Green Algorithms charges requested memory)."""
    held = [job.memory_held(node.mem_total_bytes) for job in jobs]
    if node.dram_j is None:
        return [Share(node.dram_w_per_gb * h / GIB * node.duration_s, Method.ESTIMATED) for h in held]
    total = max(node.dram_j, 0.0)
    if exclusive:
        return [Share(total, Method.MEASURED)]
    static = total * min(max(node.dram_static_fraction, 0.0), 1.0)
    dynamic = total - static
    held_total = max(node.mem_total_bytes, sum(held), 1)
    used = [max(job.memory_bytes, 0) for job in jobs]
    used_total = max(node.mem_total_bytes, sum(used), 1)
    return [
        Share(static * h / held_total + dynamic * u / used_total, Method.APPORTIONED)
        for h, u in zip(held, used, strict=True)
    ]


def gpu_shares(jobs: Sequence[JobInterval], gpu_energy: Mapping[str, Share]) -> dict[str, dict[str, Share]]:
    """Whole GPUs are their job's; MIG slices get their share (estimated); oversubscription is split."""
    claimed: dict[str, float] = defaultdict(float)
    for job in jobs:
        for claim in job.gpus:
            claimed[claim.parent_uuid] += claim.share
    result: dict[str, dict[str, Share]] = {}
    for job in jobs:
        shares: dict[str, Share] = {}
        for claim in job.gpus:
            measured = gpu_energy.get(claim.parent_uuid)
            if measured is None:
                continue
            scale = max(claimed[claim.parent_uuid], 1.0)
            if claim.share == 1.0 and scale == 1.0 and measured.joules >= 0:
                shares[claim.uuid] = measured  # a whole GPU of its own: the measurement as it is
                continue
            method = measured.method
            if claim.share < 1.0:
                method = Method.ESTIMATED
            elif scale > 1.0:
                method = Method.APPORTIONED
            shares[claim.uuid] = Share(max(measured.joules, 0.0) * claim.share / scale, method)
        result[job.key] = shares
    return result


def estimated_cpu_j(
    duration_s: float, busy_s: float, ncpus: int, idle_power_w: float, max_power_w: float
) -> float:
    """Package energy from a linear model between idle power and TDP, driven by node utilisation."""
    utilisation = min(max(busy_s / (ncpus * duration_s), 0.0), 1.0) if ncpus and duration_s > 0 else 0.0
    return (idle_power_w + (max_power_w - idle_power_w) * utilisation) * duration_s
