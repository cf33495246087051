"""Monthly reports (`jobcarbon report`): a month's energy and carbon per account, user, group or partition.

Read-only, on plain sqlite3 through `queries.Reader` (no sqlite_utils on read paths). The figures come
from footprint_months, which accounting writes with each footprint: a job's energy counts in the month
of the site's time zone in which it was used, so the reports of all months add up to all jobs. One
GROUP BY over the current footprints' months; documented in docs/reports.md.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from slurm_plugin.accounting import months
from slurm_plugin.accounting.footprint import J_PER_KWH, METHODOLOGY_VERSION
from slurm_plugin.config import Embodied
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.storage.readonly import Reader

SCHEMA = "jobcarbon/monthly-report/1"
SCOPE = "location-based scope 2"
EMBODIED_SCOPE = "scope 3 (embodied, per device-hour)"
HOURS_PER_YEAR = 8766.0  # 365.25 days
DIGITS = 6  # every number is rounded once, here, so table, CSV, JSON and HTML agree
RECOMPUTED_LISTED = 20
# The report's group column; `group` is the Unix group by gid, for sites that bill by group.
BY = {"account": "j.account", "user": "j.user_name", "group": "j.gid", "partition": "j.partition"}
SUMS = (
    "core_hours",
    "node_hours",
    "gpu_hours",
    "cpu_j",
    "dram_j",
    "gpu_j",
    "it_energy_j",
    "facility_energy_j",
    "co2e_g",
    "estimated_j",
    "series_co2e_g",
)
_CURRENT_MONTH = """FROM footprint_months m JOIN footprints f ON f.id = m.footprint_id
JOIN job_parts p ON p.id = f.part_id JOIN jobs j ON j.id = p.job
WHERE m.month = :month AND f.is_current = 1"""
_GROUPS = (
    "SELECT {col} AS grp, COUNT(DISTINCT p.job) AS jobs, "
    + ", ".join(f"SUM(m.{name}) AS {name}" for name in SUMS)
    + ", MAX(f.computed_at_s) AS computed_s, MAX(p.received_at_s) AS received_s "
    + _CURRENT_MONTH
    + " GROUP BY grp"
)
_GPU_MODELS = f"SELECT {{col}} AS grp, m.gpu_hours_json {_CURRENT_MONTH} AND m.gpu_hours > 0"
# Zones, sources and clusters without the job join: each would otherwise cost as much as a third of the
# main query on a million jobs (bench/monthly_report.py).
_SOURCES = """SELECT DISTINCT m.zone, m.sources_json FROM footprint_months m
JOIN footprints f ON f.id = m.footprint_id WHERE m.month = :month AND f.is_current = 1"""
# Text is ordered in Python, not by ORDER BY: PostgreSQL sorts by the server's collation (en_US puts
# "atlas" before "Vega"), SQLite by code point; the report must not depend on the backend.
_CLUSTERS = """SELECT DISTINCT j.cluster FROM jobs j
WHERE j.end_s >= :month_start AND j.start_s < :month_end"""
_RECOMPUTED = f"""SELECT j.cluster, j.job_id, p.node, f.version, f.computed_at_s {_CURRENT_MONTH}
    AND f.version > 1 AND f.computed_at_s >= :month_end"""
_INTENSITY = """SELECT zone, start_s, end_s, g_per_kwh, forecast FROM intensity
WHERE zone = ? AND start_s < ? AND end_s > ? ORDER BY start_s, forecast, source"""


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
    col, params = (
        BY[request.by],
        {"month": month.name, "month_start": month.start_s, "month_end": month.end_s},
    )
    found = {row["grp"]: dict(row) for row in reader.rows(_GROUPS.format(col=col), params)}
    by_model = _gpu_models(reader, col, params)
    known = [r["grp"] for r in reader.rows(f"SELECT DISTINCT {col} AS grp FROM jobs j")]  # noqa: S608 - BY only
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
        "metadata": _metadata(reader, request, month, params, found),
        "rows": table,
        "totals": _row("total", sums, all_models, total_co2e, request.embodied),
    }


def _gpu_models(reader: Reader, col: str, params: dict[str, Any]) -> dict[Any, dict[str, float]]:
    found: dict[Any, dict[str, float]] = {}
    for row in reader.rows(_GPU_MODELS.format(col=col), params):
        models = found.setdefault(row["grp"], {})
        for model, hours in json.loads(row["gpu_hours_json"]).items():
            models[model] = models.get(model, 0.0) + hours
    return found


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


def _metadata(
    reader: Reader, request: Request, month: months.Month, params: dict[str, Any], found: dict
) -> dict[str, Any]:
    zone = ZoneInfo(request.timezone)
    zones, sources = set(), set()
    for row in reader.rows(_SOURCES, params):
        if row["zone"]:
            zones.add(row["zone"])
        sources.update(json.loads(row["sources_json"]))
    recomputed = sorted(
        reader.rows(_RECOMPUTED, params), key=lambda r: (r["cluster"], r["job_id"], r["node"])
    )
    as_of = max((max(f["computed_s"] or 0, f["received_s"] or 0) for f in found.values()), default=None)
    return {
        "clusters": sorted(r["cluster"] for r in reader.rows(_CLUSTERS, params)),
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
        "scope": SCOPE,
        "embodied": _embodied_meta(request.embodied),
        "methodology_version": METHODOLOGY_VERSION,
        # The newest data the report includes, not the wall clock: re-runs of a closed month are identical.
        "generated_at": _iso(as_of) if as_of else None,
        "recomputed": {
            "footprints": len(recomputed),
            "listed": [
                {
                    "cluster": r["cluster"],
                    "job_id": r["job_id"],
                    "node": r["node"],
                    "version": r["version"],
                    "computed_at": _iso(r["computed_at_s"]),
                }
                for r in recomputed[:RECOMPUTED_LISTED]
            ],
        },
    }


def _embodied_meta(embodied: Embodied) -> dict[str, Any] | None:
    if embodied.gpu_kg_co2e is None and embodied.node_kg_co2e is None:
        return None
    return {
        "scope": EMBODIED_SCOPE,
        "gpu_kg_co2e": embodied.gpu_kg_co2e,
        "gpu_lifetime_years": embodied.gpu_lifetime_years,
        "node_kg_co2e": embodied.node_kg_co2e,
        "node_lifetime_years": embodied.node_lifetime_years,
    }


def intensity_curve(reader: Reader, zones: list[str], month: months.Month) -> dict[str, list[tuple]]:
    """Per zone, the stored series over the month as (start_s, end_s, g_per_kwh, forecast)."""
    return {
        zone: [
            (r["start_s"], r["end_s"], r["g_per_kwh"], r["forecast"])
            for r in reader.rows(_INTENSITY, (zone, month.end_s, month.start_s))
        ]
        for zone in zones
    }


def _r(value: float | None) -> float:
    return round(float(value or 0.0), DIGITS)


def _kwh(joules: float | None) -> float:
    return _r((joules or 0.0) / J_PER_KWH)


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat().replace("+00:00", "Z")
