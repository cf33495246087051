"""The node ledger: the node's measured energy per ledger interval, and what its jobs were given of it.

The sampler's ticks are the ledger's atoms: each tick's node reading (`NodeInterval`, the GPUs' parts)
and the job intervals of that same tick (the journal lines, as they are journaled) are summed into the
ledger interval its start falls in (`ledger.interval_s`, aligned to the epoch). So the jobs of an interval
are exactly what their records hold for it, the node figure is the counters' delta over the same ticks,
and the remainder (idle cores, unused memory, an idle node) is their difference: Σ jobs + remainder =
node, by construction. A tick is folded in only when its GPU parts are final (counter-anchored,
`gpu_energy`) and no job still holds one of its intervals back.

Pure bookkeeping, no I/O: the agent's `ledger_writer` turns closed intervals into node records.
Where the node could not measure a component (no RAPL DRAM zone), its jobs' estimate stands for the
node's figure in that tick, so the remainder of that component is zero there, and the interval says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slurm_plugin.methods import ORDER, Method
from slurm_plugin.node.attribution import NodeInterval, Share

COMPONENTS = ("cpu", "dram", "gpu")
NOT_MEASURED = (
    "not measured on the node in part of this interval; its jobs' estimate stands for the node there"
)


@dataclass(slots=True)
class _Tick:
    """One sampler tick waiting to be folded in: the node's reading and the job lines journaled for it."""

    t0: float
    t1: float
    node: NodeInterval | None  # None: the node could not be read (no job got anything either)
    gpu_energy: Mapping[str, Share]  # the tick's per-GPU parts, final once anchored
    jobs: dict[str, list[float]] = field(default_factory=dict)  # key -> [cpu, dram, gpu, core_s]


@dataclass
class LedgerInterval:
    """One closed ledger interval, as the node record carries it (docs/record.md, "Node records")."""

    t0_s: float
    t1_s: float
    measured: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    methods: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in COMPONENTS})
    jobs: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    core_s: float = 0.0
    unmeasured_s: float = 0.0
    shares: dict[str, list[float]] = field(default_factory=dict)  # job key -> [energy_j, core_s]
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The interval in the record's flat form; a component nothing measured in any tick is null."""
        entry: dict[str, Any] = {"t0_s": round(self.t0_s, 4), "t1_s": round(self.t1_s, 4)}
        for component in COMPONENTS:
            methods = self.methods[component]
            entry[f"{component}_j"] = round(self.measured[component], 4) if methods else None
            entry[f"{component}_method"] = _weakest(methods) if methods else None
        for component in COMPONENTS:
            entry[f"jobs_{component}_j"] = round(self.jobs[component], 4)
        entry["jobs_core_s"] = round(self.core_s, 4)
        entry["unmeasured_s"] = round(self.unmeasured_s, 4)
        entry["job_shares"] = sorted(
            [int(job), int(restart), round(energy, 4), round(core_s, 4)]
            for (job, _, restart), (energy, core_s) in (
                (key.partition("."), v) for key, v in self.shares.items()
            )
        )
        entry["notes"] = list(self.notes)
        return entry


def _weakest(methods: set[str]) -> str:
    return max(methods, key=lambda m: ORDER.index(Method(m)))


class NodeLedger:
    """Sums the sampler's ticks into ledger intervals; `closed` hands out the intervals that are done."""

    def __init__(self, interval_s: float, first_note: str | None = None):
        self.interval_s = interval_s
        self._ticks: dict[float, _Tick] = {}  # by the tick's time, rounded as the journal rounds it
        self._open: LedgerInterval | None = None
        self._closed: list[LedgerInterval] = []
        self._note = first_note  # for the first interval: the gap before it (agent restart, reboot)

    def node_tick(
        self, t0: float, t1: float, node: NodeInterval | None, gpu_energy: Mapping[str, Share]
    ) -> None:
        """A tick's node reading; its GPU parts may still be provisional (they are read when folded)."""
        self._ticks[round(t1, 4)] = _Tick(t0, t1, node, gpu_energy)

    def job_line(self, key: str, entry: Mapping[str, Any]) -> None:
        """A job's journaled interval line (sampler `_interval_entry`, GPU parts filled)."""
        tick = self._ticks.get(round(entry["t1"], 4))
        if tick is None:
            return  # a tick from before the ledger started (never: both start with the sampler)
        cpu = entry["cpu"][0] if entry["cpu"] else 0.0
        dram = entry["dram"][0] if entry["dram"] else 0.0
        gpu = sum(part[0] for part in (entry["gpu"] or {}).values() if part)
        core_s = entry["cpus"] * (entry["t1"] - entry["t0"])
        tick.jobs[key] = [cpu, dram, gpu, core_s]

    def fold(
        self,
        final: Callable[[str, float], bool],
        held_from: float = math.inf,
        stale_before: float = -math.inf,
    ) -> None:
        """Fold in, oldest first, every tick whose GPU parts are `final` (or that ended before
        `stale_before`: a GPU whose counter never anchors again keeps its power-integrated parts) and
        that starts before the oldest job interval still held back (`held_from`, a tick time)."""
        for time_s in sorted(self._ticks):
            tick = self._ticks[time_s]
            settled = tick.t1 < stale_before or all(final(uuid, tick.t1) for uuid in tick.gpu_energy)
            if tick.t1 >= held_from or not settled:
                return
            del self._ticks[time_s]
            self._add(tick)

    def close(self) -> None:
        """Fold in what is left and close the open interval (the agent is stopping)."""
        self.fold(lambda _uuid, _t: True)
        if self._open is not None:
            self._closed.append(self._open)
            self._open = None

    def closed(self) -> list[LedgerInterval]:
        """The intervals closed since the last call."""
        done, self._closed = self._closed, []
        return done

    def _add(self, tick: _Tick) -> None:
        index = math.floor(tick.t0 / self.interval_s)
        current = self._open
        if current is not None and math.floor(current.t0_s / self.interval_s) != index:
            self._closed.append(current)
            current = None
        if current is None:
            current = self._open = LedgerInterval(tick.t0, tick.t1)
            if self._note is not None:
                current.notes.append(self._note)
                self._note = None
        current.t1_s = tick.t1
        _fold_tick(current, tick)


def _fold_tick(interval: LedgerInterval, tick: _Tick) -> None:
    """Add one tick's node figures and job lines to the interval."""
    duration = tick.t1 - tick.t0
    node = tick.node
    if node is None:
        interval.unmeasured_s += duration
        return
    jobs = [sum(parts[i] for parts in tick.jobs.values()) for i in range(3)]
    readings: dict[str, tuple[float | None, str]] = {
        "cpu": (node.cpu_j, node.cpu_method),
        "dram": (node.dram_j, Method.MEASURED),
        "gpu": (sum(p.joules for p in tick.gpu_energy.values()), _gpu_method(tick.gpu_energy)),
    }
    unmeasured = False
    for i, component in enumerate(COMPONENTS):
        joules, method = readings[component]
        if component == "gpu" and not tick.gpu_energy:
            continue  # no GPU read in this tick (none held by a job): the interval's GPU figure is null
        if joules is None:
            unmeasured = unmeasured or component == "cpu"
            joules, method = jobs[i], Method.ESTIMATED  # the jobs' estimate stands for the node
            _note_once(interval, f"{component}: {NOT_MEASURED}")
        interval.measured[component] += joules
        interval.methods[component].add(str(method))
        interval.jobs[component] += jobs[i]
    if unmeasured:
        interval.unmeasured_s += duration
    for key, (cpu, dram, gpu, core_s) in tick.jobs.items():
        share = interval.shares.setdefault(key, [0.0, 0.0])
        share[0] += cpu + dram + gpu
        share[1] += core_s
        interval.core_s += core_s


def _gpu_method(parts: Mapping[str, Share]) -> str:
    return _weakest({str(p.method) for p in parts.values()}) if parts else str(Method.MEASURED)


def _note_once(interval: LedgerInterval, text: str) -> None:
    if text not in interval.notes:
        interval.notes.append(text)
