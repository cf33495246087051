"""The greenest and dirtiest start of a job within ±12 h of its own: pure, on stored intensity slots.

A job of length L started at s would have drawn its energy from the grid over [s, s + L], so its
intensity is the time-weighted mean of the slots over that window, not one slot's value. The mean is a
piecewise-linear function of s whose bends are where s or s + L meets a slot edge, so those starts
(with the ends of the range) are the only ones to try: the extremes are exact, not sampled. The job's
energy is taken as spread evenly over its run (docs/querying.md), and only windows the stored series
covers without a gap count.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Any

from slurm_plugin import figures
from slurm_plugin.times import iso_z

AROUND_S = 12 * 3600.0  # starts tried: up to 12 h before or after the job's own
SHORTEST_S = 1.0  # a job shorter than this is weighed as this long (the slot it started in)


def fetch_range(start_s: float, end_s: float) -> tuple[float, float]:
    """The span of intensity the what-if reads: every window a start within ±AROUND_S can reach."""
    return start_s - AROUND_S, start_s + AROUND_S + max(end_s - start_s, SHORTEST_S)


def day_range(kwh: float, slots: Sequence[dict[str, Any]], start_s: float, elapsed_s: float) -> Any:
    """The greenest and dirtiest window of the job's length within ±AROUND_S of its start, or None when
    the stored series covers no such window. `slots` are ordered by start, an actual before a forecast."""
    series = _series(slots)
    if not series:
        return None
    length = max(elapsed_s, SHORTEST_S)
    lo, hi = start_s - AROUND_S, start_s + AROUND_S
    edges = {edge for begin, end, _ in series for edge in (begin, end)}
    candidates = {lo, hi, start_s} | {e for edge in edges for e in (edge, edge - length)}
    mean_at = _Integral(series)
    tried = sorted(c for c in candidates if lo <= c <= hi)
    found = [(mean, s) for s in tried if (mean := mean_at(s, length)) is not None]
    if not found:
        return None

    def window(mean: float, s: float) -> dict[str, Any]:
        return {
            "start": iso_z(s, "seconds"),
            "end": iso_z(s + length, "seconds"),
            "g_per_kwh": round(mean, 3),
            "co2e_g": figures.kept(kwh * mean),
        }

    greenest = min(found, key=lambda f: (f[0], f[1]))
    dirtiest = min(found, key=lambda f: (-f[0], f[1]))
    return {
        "window_start": iso_z(lo, "seconds"),
        "window_end": iso_z(hi, "seconds"),
        "slots": len(series),
        "duration_s": round(length, 3),
        "greenest": window(*greenest),
        "dirtiest": window(*dirtiest),
    }


def _series(slots: Sequence[dict[str, Any]]) -> list[tuple[float, float, float]]:
    """(start, end, g/kWh) without overlaps: the first slot stored for a start wins (an actual over a
    forecast), and a slot starting inside the previous one is cut to begin where that one ends."""
    first: dict[float, dict[str, Any]] = {}
    for slot in slots:
        first.setdefault(slot["start_s"], slot)
    series: list[tuple[float, float, float]] = []
    for slot in sorted(first.values(), key=lambda s: s["start_s"]):
        begin = max(slot["start_s"], series[-1][1]) if series else slot["start_s"]
        if slot["end_s"] > begin:
            series.append((begin, slot["end_s"], float(slot["g_per_kwh"])))
    return series


class _Integral:
    """Mean intensity over any window, from running totals of the series (one bisection per edge)."""

    def __init__(self, series: Sequence[tuple[float, float, float]]):
        self.starts = [s for s, _, _ in series]
        self.ends = [e for _, e, _ in series]
        self.values = [g for _, _, g in series]
        self.area = [0.0, *itertools.accumulate((e - s) * g for s, e, g in series)]
        self.covered = [0.0, *itertools.accumulate(e - s for s, e, _ in series)]

    def _totals(self, t: float) -> tuple[float, float]:
        i = bisect.bisect_right(self.ends, t)  # slots before i ended by t
        if i < len(self.starts) and self.starts[i] < t:
            inside = t - self.starts[i]
            return self.area[i] + inside * self.values[i], self.covered[i] + inside
        return self.area[i], self.covered[i]

    def __call__(self, start: float, length: float) -> float | None:
        area0, covered0 = self._totals(start)
        area1, covered1 = self._totals(start + length)
        if covered1 - covered0 < length * (1 - 1e-9):
            return None  # a gap in the stored series: no figure rather than a guess
        return (area1 - area0) / length
