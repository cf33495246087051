"""Turn successive raw counter readings into per-interval energy, the one place that knows about
wraparound, resets and power integration.

Every sensor's cumulative counter passes through `EnergyCounter`, so the rules are the same for RAPL
(32-bit counters that wrap at `max_energy_range_uj`) and NVML (64-bit counters that reset on a driver
reload): a delta is never negative, and an interval that cannot be measured is a gap, never a zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from slurm_plugin.methods import Method

# Looked up once: on Python 3.11 `Method.MEASURED` goes through EnumType.__getattr__ (~0.2 µs), and a
# dozen counters are updated on every tick.
_MEASURED = Method.MEASURED


# Not frozen: built on every tick, and a frozen dataclass sets each field through object.__setattr__.
@dataclass(slots=True)
class EnergyDelta:
    """Energy over one interval and how it was obtained; also a job's share (`attribution.Share`)."""

    joules: float
    method: Method


class EnergyCounter:
    """Per-channel state: previous counter value and power, to produce one delta per interval."""

    def __init__(self, joules_per_unit: float, wrap: float | None = None, max_power_w: float | None = None):
        self.joules_per_unit = joules_per_unit
        self.wrap = wrap
        self.max_power_w = max_power_w
        self._value: float | None = None
        self._power_w: float | None = None
        self._time: float | None = None
        self.resets = 0

    def update(self, time_s: float, value: float | None, power_w: float | None = None) -> EnergyDelta | None:
        """Record a reading; return the energy since the previous reading, or None for a gap."""
        previous_time, previous_value, previous_power = self._time, self._value, self._power_w
        self._time, self._value, self._power_w = time_s, value, power_w
        if previous_time is None or time_s <= previous_time:
            return None
        elapsed = time_s - previous_time
        joules = self._counter_joules(previous_value, value, elapsed)
        if joules is not None:
            return EnergyDelta(joules, _MEASURED)
        if power_w is not None and power_w >= 0:
            start = previous_power if previous_power is not None and previous_power >= 0 else power_w
            return EnergyDelta((start + power_w) / 2 * elapsed, Method.INTEGRATED)
        return None

    def _counter_joules(self, previous: float | None, current: float | None, elapsed: float) -> float | None:
        if previous is None or current is None:
            return None
        units = current - previous
        if units < 0:
            if self.wrap is None:
                self.resets += 1
                return None
            units += self.wrap
            if units < 0:  # the previous reading was above the declared wrap: not a wrap
                self.resets += 1
                return None
        joules = units * self.joules_per_unit
        if self.max_power_w is not None and joules > self.max_power_w * elapsed:
            # More than the hardware can draw: a reset or a read glitch, not energy.
            self.resets += 1
            return None
        return joules
