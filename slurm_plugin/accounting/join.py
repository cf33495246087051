"""Join stored job parts with stored intensity series into footprints, at ingest and on recompute.

The numbers come from `footprint.compute_columns`; this module only gathers its inputs from the store and
the configuration, picks the fallback rung, and saves the result with its provenance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from slurm_plugin.accounting import footprint, months, pue
from slurm_plugin.config import Accounting
from slurm_plugin.intensity import IntensityPoint, static
from slurm_plugin.times import epoch_s, utc

if TYPE_CHECKING:
    from slurm_plugin.storage.store import NewPart

SLOT_MARGIN = dt.timedelta(hours=2)  # fetch slots that started before the part but still cover it
WINDOW_MARGIN = dt.timedelta(days=1)  # IntensityWindow: read this much more either side of a request
COMPONENTS = ("cpu", "dram", "gpu")
MEASURED = "measured"


class IntensitySource(Protocol):
    def intensity(self, zone: str, start: dt.datetime, end: dt.datetime) -> list[IntensityPoint]: ...


class PartSource(IntensitySource, Protocol):
    """What computing a part's footprint reads: the part, its timeline and record, the intensity."""

    def part(self, part_id: int) -> dict[str, Any]: ...
    def timeline_columns(self, part_id: int) -> Sequence[Sequence[float]]: ...
    def record(self, part_id: int) -> dict[str, Any]: ...


class FootprintStore(PartSource, Protocol):
    def save_footprint(self, part_id: int, fields: dict[str, Any]) -> int: ...
    def footprint_months(self, footprint_id: int) -> list[dict[str, Any]]: ...
    def replace_footprint_months(self, footprint_id: int, months: list[dict[str, Any]]) -> None: ...
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


Run = Callable[[Sequence[float], Sequence[float], Sequence[float]], footprint.Footprint]


def _runner(part: dict[str, Any], store: PartSource, settings: Accounting, first: float, last: float) -> Run:
    """`compute_columns` bound to the part's intensity, fallback and PUE: a timeline in, a footprint out."""
    start, end = utc(part["start"]), utc(part["end"])
    points = store.intensity(settings.zone, start - SLOT_MARGIN, end) if settings.zone else []
    slots, rung = footprint.slots_from_points(points), fallback(settings)
    changes = pue.change_points(settings.pue_rules, first, last)

    def run(starts: Sequence[float], ends: Sequence[float], joules: Sequence[float]) -> footprint.Footprint:
        return footprint.compute_columns(
            starts,
            ends,
            joules,
            slots,
            rung,
            lambda t: pue.pue_at(settings.pue_rules, settings.pue, part.get("partition"), t),
            changes,
            zone=settings.zone,
        )

    return run


def compute_part(store: PartSource, part_id: int, settings: Accounting) -> footprint.Footprint:
    return compute_part_fields(store, part_id, settings, with_months=False)[0]


def compute_part_fields(
    store: PartSource, part_id: int, settings: Accounting, with_months: bool = True
) -> tuple[footprint.Footprint, dict[str, Any]]:
    """The part's footprint, and its fields to store: with `months`, its figures per calendar month."""
    part = store.part(part_id)
    columns = store.timeline_columns(part_id)
    starts, ends, joules = footprint.it_columns(*columns)
    start_s, end_s = epoch_s(part["start"]), epoch_s(part["end"])
    first, last = (starts[0], ends[-1]) if starts else (start_s, end_s)
    run = _runner(part, store, settings, first, last)
    whole = run(starts, ends, joules)
    fields = whole.to_dict()
    if with_months:
        shares = _method_shares(store, part_id, part)
        fields["months"] = months.split(part, columns, joules, whole, run, settings.timezone, shares)
    return whole, fields


def compute_record(
    store: FootprintStore, record: dict[str, Any], settings: Accounting
) -> footprint.Footprint:
    """The footprint of a record not stored as a part: a running job's snapshot."""
    origin = epoch_s(record["timeline"]["origin"])
    nan = float("nan")  # "not measured" in timeline columns, as the store packs them
    rows = [
        (origin + r[0], origin + r[1], *(nan if j is None else j for j in r[2:]))
        for r in record["timeline"]["rows"]
    ]
    if not rows:
        return footprint.Footprint(zone=settings.zone)
    starts, ends, joules = footprint.it_columns(*(list(c) for c in zip(*rows, strict=True)))
    part = {"start": record["start"], "end": record["end"], "partition": record.get("partition")}
    return _runner(part, store, settings, starts[0], ends[-1])(starts, ends, joules)


def _method_shares(store: PartSource, part_id: int, part: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per component with energy, the share of its joules obtained by each method (the record's
    `by_method` split): what the month's "measured" joules and uncertainty bounds are made of.

    A component's stored method is its least direct one, so one stored as "measured" is measured
    throughout; only where another method is stored is the record read (at ingest it is in memory).
    """
    shares: dict[str, dict[str, float]] = {}
    mixed = [c for c in COMPONENTS if part.get(f"{c}_method") not in (None, MEASURED)]
    energy = (store.record(part_id).get("energy") or {}) if mixed else {}
    for component in COMPONENTS:
        method = part.get(f"{component}_method")
        if method is None:
            continue
        by_method = ((energy.get(component) or {}).get("by_method") or {}) if component in mixed else {}
        total = sum(by_method.values())
        if total > 0:
            shares[component] = {m: j / total for m, j in by_method.items()}
        else:
            shares[component] = {method: 1.0}
    return shares


class IntensityWindow:
    """The store's intensity, read WINDOW_MARGIN either side of what is asked and served from there while
    requests fall inside: a node delivering a backlog, or `jobcarbon ingest` on the head node, accounts
    records that ended within hours of each other with one query, not one each (~0.2 ms of server CPU a
    record on PostgreSQL). Meant to live for one delivery: a series updated meanwhile is read next time."""

    def __init__(self, store: IntensitySource):
        self.store = store
        self.zone: str | None = None
        self.start = self.end = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.points: list[IntensityPoint] = []

    def intensity(self, zone: str, start: dt.datetime, end: dt.datetime) -> list[IntensityPoint]:
        """As the store gives them: the zone's points overlapping [start, end), by start then source."""
        if zone != self.zone or start < self.start or end > self.end:
            self.zone, self.start, self.end = zone, start - WINDOW_MARGIN, end + WINDOW_MARGIN
            self.points = self.store.intensity(zone, self.start, self.end)
        return [point for point in self.points if point.start < end and point.end > start]


class _NewPartStore:
    """A part not stored yet, served as a `PartSource` like a stored one: its footprint is computed
    before it is stored, so that both go into the database in one transaction (and a node's writer role
    never reads parts back). Intensity comes from the store, through a window."""

    def __init__(self, intensity: IntensitySource, new: NewPart):
        self.intensity_source, self.new = intensity, new

    def part(self, part_id: int) -> dict[str, Any]:
        return self.new.part()

    def timeline_columns(self, part_id: int) -> Sequence[Sequence[float]]:
        return self.new.timeline_columns()

    def record(self, part_id: int) -> dict[str, Any]:
        return self.new.record

    def intensity(self, zone: str, start: dt.datetime, end: dt.datetime) -> list[IntensityPoint]:
        return self.intensity_source.intensity(zone, start, end)


def accountant(store: IntensitySource, settings: Accounting) -> Callable[[NewPart], dict[str, Any]]:
    """`Store.add_part`'s `account`: the fields of each new part's first footprint under these settings,
    with its months, for the store to save with the part."""
    window = IntensityWindow(store)
    return lambda new: compute_part_fields(_NewPartStore(window, new), 0, settings)[1]


# The part's field that `recompute --by` groups its changes by (the report's groupings).
CHANGE_GROUPS = {"account": "account", "user": "user", "group": "gid", "partition": "partition"}


@dataclass
class MonthChange:
    """One month's, cluster's and group's figures before and after a recompute, over the footprints
    whose figures for that month were replaced."""

    footprints: int = 0
    co2e_g_before: float = 0.0
    co2e_g_after: float = 0.0
    facility_j_before: float = 0.0
    facility_j_after: float = 0.0


@dataclass
class RecomputeResult:
    checked: int = 0
    changed: int = 0  # new footprint versions
    changes: dict[tuple[str, str, Any], MonthChange] = field(default_factory=dict)  # (month, cluster, group)


def recompute(
    store: FootprintStore, settings: Accounting, since: dt.datetime | None, by: str = "account"
) -> RecomputeResult:
    """Refresh footprints whose inputs improved, and monthly figures cut differently; the previous
    version stays in the history, and `changes` says per month and group what moved."""
    result = RecomputeResult()
    for part_id in store.parts(since):
        result.checked += 1
        fresh = compute_part_fields(store, part_id, settings)[1]
        current = store.footprint(part_id)
        before = [] if current is None else store.footprint_months(current["footprint_id"])
        if current is None or _differs(current, fresh):
            store.save_footprint(part_id, fresh)
            result.changed += 1
        elif _rounded(before) != _rounded(fresh["months"]):  # months missing, or cut in another time zone
            store.replace_footprint_months(current["footprint_id"], fresh["months"])
        else:
            continue
        _add_change(result.changes, store.part(part_id), by, before, fresh["months"])
    return result


def _add_change(
    changes: dict[tuple[str, str, Any], MonthChange],
    part: dict[str, Any],
    by: str,
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
) -> None:
    """Add one part's replaced monthly figures to `changes`."""
    key = part["cluster"], part[CHANGE_GROUPS[by]]
    for month in {row["month"] for row in (*before, *after)}:
        changes.setdefault((month, *key), MonthChange()).footprints += 1
    for row in before:
        change = changes[(row["month"], *key)]
        change.co2e_g_before += row["co2e_g"]
        change.facility_j_before += row["facility_energy_j"]
    for row in after:
        change = changes[(row["month"], *key)]
        change.co2e_g_after += row["co2e_g"]
        change.facility_j_after += row["facility_energy_j"]


def _differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("co2e_g", "facility_energy_j", "rung", "energy_by_rung_j", "sources", "methodology_version")
    return any(_rounded(old.get(k)) != _rounded(new.get(k)) for k in keys)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
