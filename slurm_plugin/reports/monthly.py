"""Monthly reports (`jobcarbon report`): months' energy and carbon per account, user, group or partition.

Read-only, through `storage.readonly.Reader` (no sqlite_utils on read paths); the SQL is
`storage.month_reads`. A job's energy counts in the month of the site's time zone in which it was used,
so the reports of all months add up to all jobs; documented in docs/reports.md. `build` makes the
document every format renders: one row per month, cluster and group, the totals per month and cluster
apart from them (summing the rows gives the totals, never twice them), GPU-hours per model as rows of
their own; `intensity_curves` gathers what the HTML page draws besides it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from slurm_plugin import uncertainty
from slurm_plugin.accounting import months
from slurm_plugin.accounting.footprint import J_PER_KWH, METHODOLOGY_VERSION
from slurm_plugin.config import Embodied, MarketFactor
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.intensity import gas
from slurm_plugin.storage import month_reads, readonly
from slurm_plugin.storage.month_reads import SUMS, WASTE_SUMS, Visible
from slurm_plugin.storage.readonly import Reader
from slurm_plugin.times import iso_z

SCHEMA = "jobcarbon/monthly-report/2"
EMISSIONS_SCOPE = "location-based scope 2"  # the GHG Protocol's scope, not visibility.Scope
EMBODIED_EMISSIONS_SCOPE = "scope 3 (embodied, per device-hour)"
HOURS_PER_YEAR = 8766.0  # 365.25 days
DIGITS = 6  # every number is rounded once, here, so table, CSV, JSON and HTML agree
RECOMPUTED_LISTED = 20
MAX_MONTHS = 120  # ten years in one report
BY = tuple(month_reads.GROUP_COLUMNS)  # the report's groupings
PERIOD = ("month", "period_start", "period_end", "cluster")  # first on every row, total and GPU row
FIGURES = (
    "jobs",
    "cpu_core_hours",
    "gpu_hours",
    "cpu_kwh",
    "dram_kwh",
    "gpu_kwh",
    "it_kwh",
    "it_kwh_low",
    "it_kwh_high",
    "facility_kwh",
    "facility_kwh_low",
    "facility_kwh_high",
    "co2e_kg",
    "co2e_kg_low",
    "co2e_kg_high",
    "lifecycle_co2e_kg",
    "direct_co2e_kg",
    "direct_co2_kg",
    "mixed_basis_kg",
    "market_based_co2e_kg",
    "effective_g_per_kwh",
    "co2e_share",
    "measured_energy_share",
    "integrated_energy_share",
    "apportioned_energy_share",
    "estimated_energy_share",
    "series_intensity_co2e_share",
    "embodied_scope3_co2e_kg",
    "waste_kwh",
    "waste_co2e_kg",
)
ROW = (*PERIOD, "group", *FIGURES)
TOTAL = (*PERIOD, *FIGURES)
GPU_MODEL = (*PERIOD, "group", "gpu_model", "gpu_hours")
TOP = (*PERIOD, "group", "place", "item", "co2e_kg", "co2e_kg_low", "co2e_kg_high", "facility_kwh")
# co2e_kg split by what its intensities counted: the emission factor (lifecycle or direct) and the gas
# (CO2e, or CO2 alone); a footprint month whose sources differ in either is `mixed_basis`.
BASES = {"lifecycle_co2e": "lifecycle CO2e", "direct_co2e": "direct CO2e", "direct_co2": "direct CO2"}
MIXED = "mixed_basis"
_BASIS_SUMS = tuple(f"{b}_g" for b in (*BASES, MIXED))
_ZERO = dict.fromkeys((*SUMS, *WASTE_SUMS, *_BASIS_SUMS, "jobs"), 0)
_RANGE = re.compile(r"^([^.]+)\.\.([^.]+)$")
Curve = list[tuple[float, float, float, Any]]  # (start_s, end_s, g_per_kwh, forecast) slots, in time order


class ReportError(JobcarbonError):
    """The report cannot be made as asked (bad month, future month, unknown grouping); one line."""


@dataclass(frozen=True)
class Request:
    months: str  # "YYYY-MM", "last", a range "A..B" or a list "A,B" of those
    by: str
    timezone: str
    now_s: float  # a named month starting after this is refused; a range stops before it
    embodied: Embodied = field(default_factory=Embodied)
    visible: Visible = month_reads.EVERYTHING  # readonly.visible_filter for the viewer
    viewer: str = "every job"  # what `visible` admits, in words, for the metadata
    top: int = 0  # the largest jobs and users per month and group to list
    market: tuple[MarketFactor, ...] = ()  # accounting.market_factors


def resolve_month(text: str, timezone: str, now_s: float, future: bool = False) -> months.Month:
    """The month a user named ("YYYY-MM", or "last" for the previous one); ReportError if not valid,
    or if it starts after `now_s` unless `future` (a range's end)."""
    if text == "last":
        return months.containing(months.containing(now_s, timezone).start_s - 1, timezone)
    try:
        month = months.parse(text, timezone)
    except ValueError as exc:
        raise ReportError(f"--month {exc} (or 'last', a range A..B or a list A,B)") from None
    if month.start_s > now_s and not future:
        raise ReportError(f"--month {text} is in the future (time zone {timezone})")
    return month


def resolve_months(text: str, timezone: str, now_s: float) -> list[months.Month]:
    """The months of a --month value, in order, each once: months, "last", ranges "A..B" (both ends
    included; months after the current one are left out) and lists "A,B,..."; ReportError if not valid."""
    found: dict[str, months.Month] = {}
    for part in text.split(","):
        part = part.strip()
        ends = _RANGE.match(part)
        if not ends:
            month = resolve_month(part, timezone, now_s)
            found[month.name] = month
            continue
        month = resolve_month(ends[1], timezone, now_s)
        last = resolve_month(ends[2], timezone, now_s, future=True)
        if month.start_s > last.start_s:
            raise ReportError(f"--month {part[:40]}: the range ends before it starts")
        while month.start_s <= min(last.start_s, now_s) and len(found) <= MAX_MONTHS:
            found[month.name] = month
            month = months.following(month, timezone)
    if len(found) > MAX_MONTHS:
        raise ReportError(f"--month {text[:40]}: at most {MAX_MONTHS} months in one report")
    return sorted(found.values(), key=lambda m: m.start_s)


def build(reader: Reader, request: Request) -> dict[str, Any]:
    """The report document: metadata; per month and cluster a row per group (zeros for groups without
    energy) and a total; GPU-hours per model; the largest jobs and users if asked."""
    if request.by not in BY:
        raise ReportError(f"--by {request.by[:40]!r}: choose one of {', '.join(BY)}")
    try:
        zone = ZoneInfo(request.timezone)
    except (ValueError, KeyError) as exc:
        raise ReportError(f"accounting.timezone {request.timezone!r} is not a known time zone") from exc
    span = resolve_months(request.months, request.timezone, request.now_s)
    names = [m.name for m in span]
    rolled = month_reads.rolled_up(reader, names)  # read from rollups: the same figures, fewer rows
    used = month_reads.month_sources(reader, names, rolled)
    factors = _factors(reader, used, span)
    bases = _by_basis(used, factors)
    found = month_reads.group_sums(reader, request.by, names, request.visible, bases, rolled)
    known = month_reads.group_keys(reader, request.by, request.visible)
    periods = {m.name: _period(m, zone) for m in span}
    span_by_name = {m.name: m for m in span}
    rows: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []
    for month in names:
        keys = set(known) | {(c, g) for m, c, g in found if m == month}
        for cluster in sorted({c for c, _ in keys}):
            members = {g: found.get((month, cluster, g), _ZERO) for c, g in keys if c == cluster}
            sums = {name: sum(f[name] or 0 for f in members.values()) for name in _ZERO}
            head = {**periods[month], "cluster": cluster}
            market = market_factor(request.market, cluster, span_by_name[month], zone)
            group_rows = [
                {
                    **head,
                    "group": group_label(request.by, g),
                    **_figures(f, sums["co2e_g"], request.embodied, market),
                }
                for g, f in members.items()
            ]
            rows += sorted(group_rows, key=lambda r: (-r["co2e_kg"], r["group"]))
            totals.append({**head, **_figures(sums, sums["co2e_g"], request.embodied, market)})
    return {
        "schema": SCHEMA,
        "metadata": _metadata(reader, request, span, found, used, factors),
        "rows": rows,
        "totals": totals,
        "gpu_models": _gpu_models(reader, request, names, periods, rolled),
        "top_jobs": _top(reader, request, names, periods, "jobs", rolled),
        "top_users": _top(reader, request, names, periods, "users", rolled),
    }


def _factors(
    reader: Reader, used: set[tuple[str | None, str]], span: list[months.Month]
) -> dict[str, set[str]]:
    """Per series source the report used, the emission factors (lifecycle, direct) its stored points
    gave over the period."""
    zones = sorted({zone for zone, _ in used if zone})
    found: dict[str, set[str]] = {}
    for source, scope in month_reads.source_factors(reader, zones, span[0].start_s, span[-1].end_s):
        found.setdefault(source, set()).add(scope)
    return found


def _by_basis(used: set[tuple[str | None, str]], factors: dict[str, set[str]]) -> dict[str, list[str]]:
    """Per basis sum (`lifecycle_co2e_g`, ...), the stored source lists of the footprint months it adds."""
    bases: dict[str, list[str]] = {name: [] for name in _BASIS_SUMS}
    for text in sorted({text for _, text in used}):
        bases[f"{_basis({_source_basis(s, factors) for s in json.loads(text)})}_g"].append(text)
    return bases


def _source_basis(source: str, factors: dict[str, set[str]]) -> str:
    """A source's basis: its factor (a yearly table or a constant is lifecycle) and its gas."""
    scopes = factors.get(source, {"lifecycle"})
    return f"{next(iter(scopes))}_{gas(source).lower()}" if len(scopes) == 1 else MIXED


def _basis(of_sources: set[str]) -> str:
    """The basis of a footprint month from its sources': theirs if they agree, else mixed."""
    return next(iter(of_sources)) if len(of_sources) == 1 and of_sources <= set(BASES) else MIXED


def market_factor(
    factors: tuple[MarketFactor, ...], cluster: str, month: months.Month, zone: ZoneInfo
) -> MarketFactor | None:
    """The contractual factor for a cluster's month: the month's first day in [start, end); one naming
    the cluster before one for every cluster, then the latest start."""
    first = dt.datetime.fromtimestamp(month.start_s, zone).date()
    fitting = [
        f
        for f in factors
        if f.cluster in (None, cluster)
        and (f.start is None or f.start <= first)
        and (f.end is None or first < f.end)
    ]
    return max(fitting, key=lambda f: (f.cluster is not None, f.start or dt.date.min), default=None)


def _period(month: months.Month, zone: ZoneInfo) -> dict[str, str]:
    return {
        "month": month.name,
        "period_start": dt.datetime.fromtimestamp(month.start_s, zone).isoformat(),
        "period_end": dt.datetime.fromtimestamp(month.end_s, zone).isoformat(),
    }


def _order(key: tuple[str, str, Any]) -> tuple[str, str, bool, str]:
    return key[0], key[1], key[2] is None, str(key[2])


def _gpu_models(
    reader: Reader, request: Request, names: list[str], periods: dict[str, dict[str, str]], rolled: set[str]
) -> list[dict[str, Any]]:
    found = month_reads.gpu_hours_by_model(reader, request.by, names, request.visible, rolled)
    return [
        {**periods[key[0]], "cluster": key[1], "group": group_label(request.by, key[2]), "gpu_model": model,
         "gpu_hours": _r(hours)}
        for key in sorted(found, key=_order)
        for model, hours in sorted(found[key].items())
    ]  # fmt: skip


def _top(
    reader: Reader,
    request: Request,
    names: list[str],
    periods: dict[str, dict[str, str]],
    items: str,
    rolled: set[str],
) -> list[dict[str, Any]]:
    if request.top <= 0 or (items == "users" and request.by == "user"):  # a user's largest user: itself
        return []
    found = month_reads.top(reader, request.by, names, request.visible, items, request.top, rolled)
    listed = [
        {**periods[r["month"]], "cluster": r["cluster"], "group": group_label(request.by, r["grp"]),
         "place": int(r["place"]), "item": str(r["item"]), "co2e_kg": _r((r["co2e_g"] or 0) / 1000),
         "co2e_kg_low": _r((r["co2e_low_g"] or 0) / 1000), "co2e_kg_high": _r((r["co2e_high_g"] or 0) / 1000),
         "facility_kwh": _kwh(r["facility_energy_j"])}
        for r in found
    ]  # fmt: skip
    return sorted(listed, key=lambda r: (r["month"], r["cluster"], r["group"], r["place"]))


def group_label(by: str, key: Any) -> str:
    if key is None:
        return "(none)"
    if by == "group":
        import grp

        try:
            return f"{grp.getgrgid(int(key)).gr_name} ({key})"
        except (KeyError, OverflowError):
            return str(key)
    return str(key)


def _figures(
    f: dict[str, Any], total_co2e_g: float, embodied: Embodied, market: MarketFactor | None
) -> dict[str, Any]:
    it_j, co2e_g, facility_j = f["it_energy_j"] or 0.0, f["co2e_g"] or 0.0, f["facility_energy_j"] or 0.0
    market_kg = None if market is None else _r(facility_j / J_PER_KWH * market.g_co2e_per_kwh / 1000)
    return {
        "jobs": int(f["jobs"] or 0),
        "cpu_core_hours": _r(f["core_hours"]),
        "gpu_hours": _r(f["gpu_hours"]),
        "cpu_kwh": _kwh(f["cpu_j"]),
        "dram_kwh": _kwh(f["dram_j"]),
        "gpu_kwh": _kwh(f["gpu_j"]),
        "it_kwh": _kwh(it_j),
        "it_kwh_low": _kwh(f["it_energy_low_j"]),
        "it_kwh_high": _kwh(f["it_energy_high_j"]),
        "facility_kwh": _kwh(facility_j),
        "facility_kwh_low": _kwh(f["facility_energy_low_j"]),
        "facility_kwh_high": _kwh(f["facility_energy_high_j"]),
        "co2e_kg": _r(co2e_g / 1000),
        "co2e_kg_low": _r((f["co2e_low_g"] or 0.0) / 1000),
        "co2e_kg_high": _r((f["co2e_high_g"] or 0.0) / 1000),
        **{f"{b}_kg": _r((f[f"{b}_g"] or 0.0) / 1000) for b in (*BASES, MIXED)},
        "market_based_co2e_kg": market_kg,
        "effective_g_per_kwh": _r(co2e_g / (facility_j / J_PER_KWH)) if facility_j > 0 else None,
        "co2e_share": _r(co2e_g / total_co2e_g) if total_co2e_g > 0 else None,
        **_method_shares(f, it_j),
        "series_intensity_co2e_share": _r((f["series_co2e_g"] or 0.0) / co2e_g) if co2e_g > 0 else None,
        "embodied_scope3_co2e_kg": _embodied_kg(f, embodied),
        "waste_kwh": _kwh(f["waste_j"]),
        "waste_co2e_kg": _r((f["waste_co2e_g"] or 0.0) / 1000),
    }


def _method_shares(f: dict[str, Any], it_j: float) -> dict[str, float | None]:
    """The shares of IT energy per method: "measured" counts only joules of an energy counter, never
    power readings integrated, shares of a node's counter or models."""
    return {
        f"{method}_energy_share": _r((f[f"{method}_j"] or 0.0) / it_j) if it_j > 0 else None
        for method in months.METHOD_COLUMNS
    }


def _embodied_kg(f: dict[str, Any], embodied: Embodied) -> float | None:
    if embodied.gpu_kg_co2e is None and embodied.node_kg_co2e is None:
        return None
    kg = 0.0
    if embodied.gpu_kg_co2e is not None:
        kg += (f["gpu_hours"] or 0.0) * embodied.gpu_kg_co2e / (embodied.gpu_lifetime_years * HOURS_PER_YEAR)
    if embodied.node_kg_co2e is not None:
        kg += (
            (f["node_hours"] or 0.0) * embodied.node_kg_co2e / (embodied.node_lifetime_years * HOURS_PER_YEAR)
        )
    return _r(kg)


def _metadata(
    reader: Reader,
    request: Request,
    span: list[months.Month],
    found: dict,
    used: set[tuple[str | None, str]],
    factors: dict[str, set[str]],
) -> dict[str, Any]:
    zone = ZoneInfo(request.timezone)
    names = [m.name for m in span]
    zones = {z for z, _ in used if z}
    sources = {source for _, text in used for source in json.loads(text)}
    ends = {m.name: m.end_s for m in span}
    recomputed = sorted(
        (
            r
            for r in month_reads.recomputed_after(reader, names, span[0].end_s, request.visible)
            if r["computed_at_s"] >= ends[r["month"]]
        ),
        key=lambda r: (r["month"], r["cluster"], r["job_id"], r["node"]),
    )
    as_of = max((max(f["computed_s"] or 0, f["received_s"] or 0) for f in found.values()), default=None)
    return {
        "clusters": sorted(
            month_reads.clusters_between(reader, span[0].start_s, span[-1].end_s, request.visible)
        ),
        "months": names,
        "by": request.by,
        "period": {
            "start": dt.datetime.fromtimestamp(span[0].start_s, zone).isoformat(),
            "end": dt.datetime.fromtimestamp(span[-1].end_s, zone).isoformat(),
            "time_zone": request.timezone,
        },
        "closed": span[-1].end_s <= request.now_s,
        "visibility": request.viewer,
        "zones": sorted(zones),
        "sources": sorted(sources),
        "scope": EMISSIONS_SCOPE,
        "emission_bases": [
            {
                "source": source,
                "emission_factor": " and ".join(sorted(factors.get(source, {"lifecycle"}))),
                "gas": gas(source),
            }
            for source in sorted(sources)
        ],
        "market_based": _market_meta(request, span, zone),
        "embodied": _embodied_meta(request.embodied),
        "uncertainty": uncertainty.describe(),
        "methodology_version": METHODOLOGY_VERSION,
        # The newest data the report includes, not the wall clock: re-runs of a closed month are identical.
        "generated_at": iso_z(as_of) if as_of else None,
        "recomputed": {
            "footprints": len(recomputed),
            "listed": [
                {
                    "month": r["month"],
                    "cluster": r["cluster"],
                    "job_id": r["job_id"],
                    "node": r["node"],
                    "version": r["version"],
                    "computed_at": iso_z(r["computed_at_s"]),
                }
                for r in recomputed[:RECOMPUTED_LISTED]
            ],
        },
    }


def _market_meta(request: Request, span: list[months.Month], zone: ZoneInfo) -> list[dict[str, Any]]:
    """The contractual factors configured for the period's months: what the market-based figures used."""
    first = dt.datetime.fromtimestamp(span[0].start_s, zone).date()
    last = dt.datetime.fromtimestamp(span[-1].start_s, zone).date()
    return [
        {
            "instrument": f.instrument,
            "g_co2e_per_kwh": f.g_co2e_per_kwh,
            "cluster": f.cluster,
            "start": f.start.isoformat() if f.start else None,
            "end": f.end.isoformat() if f.end else None,
        }
        for f in request.market
        if (f.start is None or f.start <= last) and (f.end is None or first < f.end)
    ]


def _embodied_meta(embodied: Embodied) -> dict[str, Any] | None:
    if embodied.gpu_kg_co2e is None and embodied.node_kg_co2e is None:
        return None
    return {
        "scope": EMBODIED_EMISSIONS_SCOPE,
        "gpu_kg_co2e": embodied.gpu_kg_co2e,
        "gpu_lifetime_years": embodied.gpu_lifetime_years,
        "node_kg_co2e": embodied.node_kg_co2e,
        "node_lifetime_years": embodied.node_lifetime_years,
    }


def intensity_curves(reader: Reader, document: dict[str, Any]) -> dict[str, Curve]:
    """Per zone of the report, its stored intensity series over the report's period (the HTML chart)."""
    meta = document["metadata"]
    start_s = dt.datetime.fromisoformat(meta["period"]["start"]).timestamp()
    end_s = dt.datetime.fromisoformat(meta["period"]["end"]).timestamp()
    return {
        zone: [
            (r["start_s"], r["end_s"], r["g_per_kwh"], r["forecast"])
            for r in readonly.intensity_between(reader, zone, start_s, end_s)
        ]
        for zone in meta["zones"]
    }


def _r(value: float | None) -> float:
    return round(float(value or 0.0), DIGITS)


def _kwh(joules: float | None) -> float:
    return _r((joules or 0.0) / J_PER_KWH)
