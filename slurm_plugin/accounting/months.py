"""Calendar months in the site's time zone, and a part's timeline cut at their boundaries.

Pure functions. Monthly reports charge each month with the energy used inside it: a timeline interval
that straddles a month boundary is split pro rata by time (energy is spread evenly over an interval,
as docs/methodology.md assumes), so the months of a part add up to the part.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from slurm_plugin import uncertainty
from slurm_plugin.accounting.footprint import Footprint
from slurm_plugin.methods import Method
from slurm_plugin.times import epoch_s

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
SECONDS_PER_HOUR = 3600.0
SERIES_RUNGS = ("measured_series", "forecast_series")  # carbon from a time series, not an average
METHOD_COLUMNS = tuple(Method)  # a month's joules per method: measured_j, ..., estimated_j


@dataclass(frozen=True, slots=True)
class Month:
    """A calendar month [start_s, end_s) in a time zone; `name` is "YYYY-MM"."""

    name: str
    start_s: float
    end_s: float


def parse(name: str, timezone: str) -> Month:
    """The month "YYYY-MM" in `timezone`; ValueError if malformed."""
    found = MONTH_RE.match(name)
    if not found:
        raise ValueError(f"{name[:40]!r} is not a month (YYYY-MM)")
    return _month(int(found[1]), int(found[2]), ZoneInfo(timezone))


def containing(moment_s: float, timezone: str) -> Month:
    """The month of `timezone` that contains UTC epoch `moment_s`."""
    zone = ZoneInfo(timezone)
    local = dt.datetime.fromtimestamp(moment_s, zone)
    return _month(local.year, local.month, zone)


def following(month: Month, timezone: str) -> Month:
    return containing(month.end_s, timezone)


def _month(year: int, month: int, zone: ZoneInfo) -> Month:
    start = dt.datetime(year, month, 1, tzinfo=zone)
    after = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return Month(f"{year:04d}-{month:02d}", start.timestamp(), after.timestamp())


def spanning(first_s: float, last_s: float, timezone: str) -> list[Month]:
    """The months that [first_s, last_s] touches, in order (at least the one holding first_s)."""
    month = containing(first_s, timezone)
    found = [month]
    while month.end_s < last_s:
        month = following(month, timezone)
        found.append(month)
    return found


def overlap_s(start_s: float, end_s: float, month: Month) -> float:
    return max(0.0, min(end_s, month.end_s) - max(start_s, month.start_s))


@dataclass(frozen=True, slots=True)
class Slice:
    """A timeline's intervals inside one month: clipped bounds, energies scaled to the time inside."""

    month: Month
    starts: list[float]
    ends: list[float]
    joules: list[float]
    cpu_j: float
    dram_j: float
    gpu_j: float


def slice_timeline(month: Month, columns: Sequence[Sequence[float]], joules: Sequence[float]) -> Slice:
    """The part of a timeline (t0, t1, cpu, dram, gpu columns; NaN not measured) inside `month`.

    An instantaneous interval (t0 == t1) belongs to the month holding t0.
    """
    t0s, t1s, cpus, drams, gpus = columns
    starts, ends, energy = [], [], []
    sums = [0.0, 0.0, 0.0]
    lo, hi = month.start_s, month.end_s
    for i, (t0, t1) in enumerate(zip(t0s, t1s, strict=True)):
        if t1 > t0:
            inside = min(t1, hi) - max(t0, lo)
            if inside <= 0:
                continue
            fraction = 1.0 if t0 >= lo and t1 <= hi else inside / (t1 - t0)
        elif lo <= t0 < hi:
            fraction = 1.0
        else:
            continue
        starts.append(max(t0, lo))
        ends.append(min(t1, hi) if t1 > t0 else t1)
        energy.append(joules[i] * fraction)
        for k, column in enumerate((cpus, drams, gpus)):
            value = column[i]
            if not math.isnan(value):
                sums[k] += value * fraction
    return Slice(month, starts, ends, energy, *sums)


def split(
    part: dict[str, Any],
    columns: Sequence[Sequence[float]],
    joules: Sequence[float],
    whole: Footprint,
    run: Callable[[Sequence[float], Sequence[float], Sequence[float]], Footprint],
    timezone: str,
    method_shares: dict[str, dict[str, float]],
) -> list[dict[str, Any]]:
    """A part's figures per month of `timezone`: `run` (the footprint formula bound to the part's
    intensity and PUE) on each month's slice, so Σ months == `whole`; per component, `method_shares`
    splits its joules by method (join._method_shares), for the month's joules per method and its
    uncertainty bounds. Every part has at least the month it started in, even without energy."""
    start_s, end_s = epoch_s(part["start"]), epoch_s(part["end"])
    t0s, t1s = columns[0], columns[1]
    first = min(start_s, t0s[0]) if len(t0s) else start_s
    last = max(end_s, t1s[-1]) if len(t1s) else end_s
    spanned = spanning(first, last, timezone)
    gpus = part.get("gpus") or []
    found = []
    for month in spanned:
        if len(spanned) == 1:
            piece = Slice(month, [], [], [], *(_nansum(c) for c in columns[2:]))
            result = whole
        else:
            piece = slice_timeline(month, columns, joules)
            result = run(piece.starts, piece.ends, piece.joules)
        hours = overlap_s(start_s, end_s, month) / SECONDS_PER_HOUR
        by_model: dict[str, float] = {}
        for gpu in gpus:
            model = str(gpu.get("model") or "unknown")
            by_model[model] = by_model.get(model, 0.0) + float(gpu.get("share") or 1.0) * hours
        by_method = _by_method({"cpu": piece.cpu_j, "dram": piece.dram_j, "gpu": piece.gpu_j}, method_shares)
        band = uncertainty.bounds(
            result.it_energy_j, result.facility_energy_j, by_method, result.co2e_by_rung_g
        )
        found.append(
            {
                "month": month.name,
                "it_energy_j": result.it_energy_j,
                "facility_energy_j": result.facility_energy_j,
                "co2e_g": result.co2e_g,
                "cpu_j": piece.cpu_j,
                "dram_j": piece.dram_j,
                "gpu_j": piece.gpu_j,
                **{f"{method}_j": by_method.get(method, 0.0) for method in METHOD_COLUMNS},
                **band.as_dict(),
                "series_co2e_g": sum(result.co2e_by_rung_g.get(r, 0.0) for r in SERIES_RUNGS),
                "core_hours": float(part.get("cpu_count") or 0) * hours,
                "node_hours": hours,
                "gpu_hours": sum(by_model.values()),
                "gpu_hours_by_model": dict(sorted(by_model.items())),
                "zone": result.zone,
                "sources": list(result.sources),
            }
        )
    return found


def _by_method(component_j: dict[str, float], shares: dict[str, dict[str, float]]) -> dict[str, float]:
    """Joules per method of the components' joules, each split by its shares (a component without
    shares, never measured, has no joules)."""
    found: dict[str, float] = {}
    for component, joules in component_j.items():
        for method, share in shares.get(component, {}).items():
            found[method] = found.get(method, 0.0) + joules * share
    return found


def _nansum(column: Sequence[float]) -> float:
    total = sum(column)  # without a generator: most timelines have no gap
    return total if total == total else sum(v for v in column if v == v)  # NaN != NaN: not measured
