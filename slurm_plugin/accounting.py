"""Join stored job parts with stored intensity series into footprints, at ingest and on recompute.

The numbers come from `footprint.compute_columns`; this module only gathers its inputs from the store and
the configuration, picks the fallback rung, and saves the result with its provenance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from slurm_plugin import footprint, pue
from slurm_plugin.config import Accounting
from slurm_plugin.intensity import IntensityPoint, static

SLOT_MARGIN = dt.timedelta(hours=2)  # fetch slots that started before the part but still cover it


class FootprintStore(Protocol):
    def part(self, part_id: int) -> dict[str, Any]: ...
    def timeline_columns(self, part_id: int) -> list[Sequence[float]]: ...
    def intensity(self, zone: str, start: dt.datetime, end: dt.datetime) -> list[IntensityPoint]: ...
    def save_footprint(self, part_id: int, fields: dict[str, Any]) -> int: ...
    def footprint(self, part_id: int) -> dict[str, Any] | None: ...
    def parts(self, since: dt.datetime | None = None) -> list[int]: ...


def fallback(settings: Accounting) -> footprint.Fallback:
    """The best rung below the series: zone yearly, country yearly, configured constant, world."""
    country = settings.country or (static.country_of_zone(settings.zone) if settings.zone else None)
    candidates = [
        ("zone_yearly", static.zone_yearly(settings.zone) if settings.zone else None),
        ("country_yearly", static.country_yearly(country) if country else None),
        (
            "constant",
            (settings.constant_g_per_kwh, "configured constant", "lifecycle")
            if settings.constant_g_per_kwh
            else None,
        ),
        ("world", static.world()),
    ]
    for rung, found in candidates:
        if found is not None:
            g_per_kwh, source, scope = found
            return footprint.Fallback(g_per_kwh, rung, source, scope)
    raise AssertionError("the world average is always available")


def compute_part(store: FootprintStore, part_id: int, settings: Accounting) -> footprint.Footprint:
    part = store.part(part_id)
    starts, ends, joules = footprint.it_columns(*store.timeline_columns(part_id))
    start, end = _utc(part["start"]), _utc(part["end"])
    points = store.intensity(settings.zone, start - SLOT_MARGIN, end) if settings.zone else []
    first, last = (starts[0], ends[-1]) if starts else (start.timestamp(), end.timestamp())
    return footprint.compute_columns(
        starts,
        ends,
        joules,
        footprint.slots_from_points(points),
        fallback(settings),
        lambda t: pue.pue_at(settings.pue_rules, settings.pue, part.get("partition"), t),
        pue.change_points(settings.pue_rules, first, last),
        zone=settings.zone,
    )


def account_part(store: FootprintStore, part_id: int, settings: Accounting) -> dict[str, Any]:
    """Compute and save the footprint of a newly stored part."""
    fields = compute_part(store, part_id, settings).to_dict()
    store.save_footprint(part_id, fields)
    return fields


@dataclass
class RecomputeResult:
    checked: int = 0
    changed: int = 0


def recompute(store: FootprintStore, settings: Accounting, since: dt.datetime | None) -> RecomputeResult:
    """Refresh footprints whose inputs improved; the previous version stays in the history."""
    result = RecomputeResult()
    for part_id in store.parts(since):
        result.checked += 1
        fresh = compute_part(store, part_id, settings).to_dict()
        current = store.footprint(part_id)
        if current is None or _differs(current, fresh):
            store.save_footprint(part_id, fresh)
            result.changed += 1
    return result


def _differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("co2e_g", "facility_energy_j", "rung", "energy_by_rung_j", "sources", "methodology_version")
    return any(_rounded(old.get(k)) != _rounded(new.get(k)) for k in keys)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.UTC)
