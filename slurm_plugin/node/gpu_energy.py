"""Counter-anchored GPU energy: power on every tick for the timeline's shape, the energy counter only at
anchors for the total.

One read of an H200's energy counter costs 3.85 ms of CPU in the driver, a power reading 10 µs
(docs/testing.md), so reading eight counters on every tick and on every job start and stop cost more
than everything else the agent does. Here each interval first gets a provisional trapezoid of power;
at the next anchor (job start and end, and every `nvml.counter_interval_s`) the provisional energies
since the previous anchor are scaled so that they sum to the counter's delta. A job's GPU total is
then exactly what the counter says; only the split between the intervals follows power. A GPU without
a counter keeps plain power integration, and a segment whose counter reset (driver reload) stays
power-integrated, flagged as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from slurm_plugin.methods import Method
from slurm_plugin.node.counters import EnergyCounter, EnergyDelta

MAX_GPU_W = 3000.0  # above any GPU's board power: a larger counter jump is a reset, not energy


@dataclass(slots=True)
class Step:
    """What one reading of a GPU gave: the interval's (maybe provisional) part, and a counter reset."""

    part: EnergyDelta | None
    reset: bool


class GpuTrack:
    """One physical GPU's readings: the provisional parts since its last anchor and the counter."""

    def __init__(self) -> None:
        self.counter = EnergyCounter(1e-3, None, MAX_GPU_W)
        self.has_counter = True  # False once the counter proves NotSupported (pre-Volta)
        self.anchored_until: float | None = None  # parts up to this time are final
        self.last_anchor: float | None = None
        self.total_j = 0.0  # final energy so far (anchored, or integrated without a counter): node metrics
        self._time: float | None = None
        self._power_w: float | None = None
        self._segment: list[tuple[EnergyDelta, float]] = []  # provisional parts and their durations

    def due(self, time_s: float, interval_s: float) -> bool:
        """Whether a reading at `time_s` should include the counter."""
        if not self.has_counter:
            return False
        return self.last_anchor is None or time_s - self.last_anchor >= interval_s

    def step(self, time_s: float, power_w: float | None, energy_mj: float | None = None) -> Step:
        """Take a reading (power, and the counter at an anchor); return the interval's part, if any.

        The part is provisional (`integrated`) until an anchor scales it in place; `Step.reset` says the
        counter went backwards or jumped, so the segment it closed stays power-integrated.
        """
        part = self._provisional(time_s, power_w)
        if part is not None and self._time is not None and self.has_counter:
            self._segment.append((part, time_s - self._time))
        self._time = time_s
        self._power_w = power_w if power_w is not None else self._power_w
        if not self.has_counter:
            self.anchored_until = time_s
            self.total_j += part.joules if part is not None else 0.0
            return Step(part, False)
        if energy_mj is None:
            return Step(part, False)  # not an anchor, or the counter failed: the segment goes on
        resets = self.counter.resets
        delta = self.counter.update(time_s, energy_mj)
        if delta is not None:
            self._scale(delta.joules)
        self.total_j += sum(part.joules for part, _ in self._segment)
        self._segment.clear()
        self.last_anchor = self.anchored_until = time_s
        return Step(part, self.counter.resets > resets)

    def drop_counter(self, time_s: float) -> None:
        """The counter is NotSupported: what is pending stays integrated, and so is all that follows."""
        self.has_counter = False
        self.total_j += sum(part.joules for part, _ in self._segment)
        self._segment.clear()
        self.anchored_until = time_s

    def _provisional(self, time_s: float, power_w: float | None) -> EnergyDelta | None:
        previous_time, previous_w = self._time, self._power_w
        if previous_time is None or time_s <= previous_time:
            return None
        end_w = power_w if power_w is not None else previous_w
        start_w = previous_w if previous_w is not None else end_w
        if start_w is None or end_w is None:
            # No power at all: a counter GPU still gets its share of the delta (by duration), else a gap.
            return EnergyDelta(0.0, Method.INTEGRATED) if self.has_counter else None
        return EnergyDelta(max(start_w + end_w, 0.0) / 2 * (time_s - previous_time), Method.INTEGRATED)

    def _scale(self, joules: float) -> None:
        """Scale the segment's parts to sum to the counter's `joules` (by duration if power saw none)."""
        provisional = sum(part.joules for part, _ in self._segment)
        duration = sum(seconds for _, seconds in self._segment)
        for part, seconds in self._segment:
            if provisional > 0:
                part.joules *= joules / provisional
            else:
                part.joules = joules * seconds / duration if duration > 0 else 0.0
            part.method = Method.MEASURED
