"""The monthly report's reads (`reports/monthly.py`): a month's footprint figures per group, as rows.

The figures come from footprint_months, which accounting writes with each footprint: a job's energy
counts in the month of the site's time zone in which it was used. One GROUP BY over the current
footprints' months; zones, sources and clusters are read without the job join, which would otherwise
cost as much as a third of the main query on a million jobs (bench/monthly_report.py). Text is ordered
by the caller, not by ORDER BY: PostgreSQL sorts by the server's collation (en_US puts "atlas" before
"Vega"), SQLite by code point, and a report must not depend on the backend.
"""

from __future__ import annotations

import json
from typing import Any

from slurm_plugin.storage.readonly import Reader

# The report's groupings and their column; `group` is the Unix group by gid, for sites that bill by group.
GROUP_COLUMNS = {"account": "j.account", "user": "j.user_name", "group": "j.gid", "partition": "j.partition"}
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
_SOURCES = """SELECT DISTINCT m.zone, m.sources_json FROM footprint_months m
JOIN footprints f ON f.id = m.footprint_id WHERE m.month = :month AND f.is_current = 1"""
_CLUSTERS = """SELECT DISTINCT j.cluster FROM jobs j
WHERE j.end_s >= :month_start AND j.start_s < :month_end"""
_RECOMPUTED = f"""SELECT j.cluster, j.job_id, p.node, f.version, f.computed_at_s {_CURRENT_MONTH}
    AND f.version > 1 AND f.computed_at_s >= :month_end"""


def group_sums(reader: Reader, by: str, month: str) -> dict[Any, dict[str, Any]]:
    """Per group key with energy in the month: `jobs`, each of SUMS, and the newest `computed_s` and
    `received_s` of its footprints and parts."""
    found = reader.rows(_GROUPS.format(col=GROUP_COLUMNS[by]), {"month": month})
    return {row["grp"]: row for row in found}


def group_keys(reader: Reader, by: str) -> list[Any]:
    """Every group key any stored job has, energy in the month or not."""
    sql = f"SELECT DISTINCT {GROUP_COLUMNS[by]} AS grp FROM jobs j"  # noqa: S608 - GROUP_COLUMNS only
    return [row["grp"] for row in reader.rows(sql)]


def gpu_hours_by_model(reader: Reader, by: str, month: str) -> dict[Any, dict[str, float]]:
    """Per group key, the month's GPU-hours per GPU model."""
    found: dict[Any, dict[str, float]] = {}
    for row in reader.rows(_GPU_MODELS.format(col=GROUP_COLUMNS[by]), {"month": month}):
        models = found.setdefault(row["grp"], {})
        for model, hours in json.loads(row["gpu_hours_json"]).items():
            models[model] = models.get(model, 0.0) + hours
    return found


def zones_and_sources(reader: Reader, month: str) -> tuple[set[str], set[str]]:
    """The grid zones and intensity sources the month's current footprints used."""
    zones, sources = set(), set()
    for row in reader.rows(_SOURCES, {"month": month}):
        if row["zone"]:
            zones.add(row["zone"])
        sources.update(json.loads(row["sources_json"]))
    return zones, sources


def clusters_between(reader: Reader, start_s: float, end_s: float) -> set[str]:
    """The clusters with a stored job running at some time in [start_s, end_s)."""
    return {row["cluster"] for row in reader.rows(_CLUSTERS, {"month_start": start_s, "month_end": end_s})}


def recomputed_after(reader: Reader, month: str, end_s: float) -> list[dict[str, Any]]:
    """The month's current footprints recomputed (version > 1) at or after `end_s`, the month's end:
    cluster, job_id, node, version, computed_at_s."""
    return reader.rows(_RECOMPUTED, {"month": month, "month_end": end_s})
