"""Monthly reports (`jobcarbon report`): a month's energy and carbon per account, user, group or partition.

Read-only, through `storage.readonly.Reader` (no sqlite_utils on read paths); the SQL is
`storage.month_reads`. A job's energy counts in the month of the site's time zone in which it was used,
so the reports of all months add up to all jobs; documented in docs/reports.md. `build` makes the
document every format renders; `intensity_curves` gathers what the HTML page draws besides it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from slurm_plugin.accounting import months
from slurm_plugin.accounting.footprint import J_PER_KWH, METHODOLOGY_VERSION
from slurm_plugin.config import Embodied
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.storage import month_reads, readonly
from slurm_plugin.storage.month_reads import SUMS
from slurm_plugin.storage.readonly import Reader
from slurm_plugin.times import iso_z

SCHEMA = "jobcarbon/monthly-report/1"
EMISSIONS_SCOPE = "location-based scope 2"  # the GHG Protocol's scope, not visibility.Scope
EMBODIED_EMISSIONS_SCOPE = "scope 3 (embodied, per device-hour)"
HOURS_PER_YEAR = 8766.0  # 365.25 days
DIGITS = 6  # every number is rounded once, here, so table, CSV, JSON and HTML agree
RECOMPUTED_LISTED = 20
BY = tuple(month_reads.GROUP_COLUMNS)  # the report's groupings
Curve = list[tuple[float, float, float, Any]]  # (start_s, end_s, g_per_kwh, forecast) slots, in time order


class ReportError(JobcarbonError):
    """The report cannot be made as asked (bad month, future month, unknown grouping); one line."""


@dataclass(frozen=True)
class Request:
    month: str  # "YYYY-MM"
    by: str
    timezone: str
    now_s: float  # a month starting after this is refused
    embodied: Embodied = field(default_factory=Embodied)


def resolve_month(text: str, timezone: str, now_s: float) -> months.Month:
    """The month a user named ("YYYY-MM", or "last" for the previous one); ReportError if not valid."""
    if text == "last":
        return months.containing(months.containing(now_s, timezone).start_s - 1, timezone)
    try:
        month = months.parse(text, timezone)
    except ValueError as exc:
        raise ReportError(f"--month {exc} (or 'last')") from None
    if month.start_s > now_s:
        raise ReportError(f"--month {text} is in the future (time zone {timezone})")
    return month


def build(reader: Reader, request: Request) -> dict[str, Any]:
    """The report document: metadata, one row per group (zeros for groups without energy), totals."""
    if request.by not in BY:
        raise ReportError(f"--by {request.by[:40]!r}: choose one of {', '.join(BY)}")
    try:
        ZoneInfo(request.timezone)
    except (ValueError, KeyError) as exc:
        raise ReportError(f"accounting.timezone {request.timezone!r} is not a known time zone") from exc
    month = resolve_month(request.month, request.timezone, request.now_s)
    found = month_reads.group_sums(reader, request.by, month.name)
    by_model = month_reads.gpu_hours_by_model(reader, request.by, month.name)
    known = month_reads.group_keys(reader, request.by)
    sums = dict.fromkeys((*SUMS, "jobs"), 0.0)
    rows = []
    for key in sorted(set(known) | set(found), key=lambda k: (k is None, str(k))):
        figures = found.get(key) or dict.fromkeys((*SUMS, "jobs"), 0)
        for name in sums:
            sums[name] += figures[name] or 0.0
        rows.append((key, figures, by_model.get(key, {})))
    all_models: dict[str, float] = {}
    for models in by_model.values():
        for model, hours in models.items():
            all_models[model] = all_models.get(model, 0.0) + hours
    total_co2e = sums["co2e_g"]
    table = [_row(_label(request.by, k), f, m, total_co2e, request.embodied) for k, f, m in rows]
    table.sort(key=lambda r: (-r["co2e_kg"], r["group"]))
    return {
        "schema": SCHEMA,
        "metadata": _metadata(reader, request, month, found),
        "rows": table,
        "totals": _row("total", sums, all_models, total_co2e, request.embodied),
    }


def _label(by: str, key: Any) -> str:
    if key is None:
        return "(none)"
    if by == "group":
        import grp

        try:
            return f"{grp.getgrgid(int(key)).gr_name} ({key})"
        except (KeyError, OverflowError):
            return str(key)
    return str(key)


def _row(
    group: str, f: dict[str, Any], models: dict[str, float], total_co2e_g: float, embodied: Embodied
) -> dict[str, Any]:
    it_j, co2e_g, facility_j = f["it_energy_j"] or 0.0, f["co2e_g"] or 0.0, f["facility_energy_j"] or 0.0
    return {
        "group": group,
        "jobs": int(f["jobs"] or 0),
        "cpu_core_hours": _r(f["core_hours"]),
        "gpu_hours": _r(f["gpu_hours"]),
        "gpu_hours_by_model": {m: _r(h) for m, h in sorted(models.items())},
        "cpu_kwh": _kwh(f["cpu_j"]),
        "dram_kwh": _kwh(f["dram_j"]),
        "gpu_kwh": _kwh(f["gpu_j"]),
        "it_kwh": _kwh(it_j),
        "facility_kwh": _kwh(facility_j),
        "co2e_kg": _r(co2e_g / 1000),
        "effective_g_per_kwh": _r(co2e_g / (facility_j / J_PER_KWH)) if facility_j > 0 else None,
        "co2e_share": _r(co2e_g / total_co2e_g) if total_co2e_g > 0 else None,
        "measured_energy_share": _r(1 - (f["estimated_j"] or 0.0) / it_j) if it_j > 0 else None,
        "series_intensity_co2e_share": _r((f["series_co2e_g"] or 0.0) / co2e_g) if co2e_g > 0 else None,
        "embodied_co2e_kg": _embodied_kg(f, embodied),
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


def _metadata(reader: Reader, request: Request, month: months.Month, found: dict) -> dict[str, Any]:
    zone = ZoneInfo(request.timezone)
    zones, sources = month_reads.zones_and_sources(reader, month.name)
    recomputed = sorted(
        month_reads.recomputed_after(reader, month.name, month.end_s),
        key=lambda r: (r["cluster"], r["job_id"], r["node"]),
    )
    as_of = max((max(f["computed_s"] or 0, f["received_s"] or 0) for f in found.values()), default=None)
    return {
        "clusters": sorted(month_reads.clusters_between(reader, month.start_s, month.end_s)),
        "month": month.name,
        "by": request.by,
        "period": {
            "start": dt.datetime.fromtimestamp(month.start_s, zone).isoformat(),
            "end": dt.datetime.fromtimestamp(month.end_s, zone).isoformat(),
            "time_zone": request.timezone,
        },
        "closed": month.end_s <= request.now_s,
        "zones": sorted(zones),
        "sources": sorted(sources),
        "scope": EMISSIONS_SCOPE,
        "embodied": _embodied_meta(request.embodied),
        "methodology_version": METHODOLOGY_VERSION,
        # The newest data the report includes, not the wall clock: re-runs of a closed month are identical.
        "generated_at": iso_z(as_of) if as_of else None,
        "recomputed": {
            "footprints": len(recomputed),
            "listed": [
                {
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
    """Per zone of the report, its stored intensity series over the report's month (the HTML chart)."""
    meta = document["metadata"]
    month = months.parse(meta["month"], meta["period"]["time_zone"])
    return {
        zone: [
            (r["start_s"], r["end_s"], r["g_per_kwh"], r["forecast"])
            for r in readonly.intensity_between(reader, zone, month.start_s, month.end_s)
        ]
        for zone in meta["zones"]
    }


def _r(value: float | None) -> float:
    return round(float(value or 0.0), DIGITS)


def _kwh(joules: float | None) -> float:
    return _r((joules or 0.0) / J_PER_KWH)
