"""The node ledger in the monthly report: per month and cluster, the IT energy the nodes measured, the
part their jobs were given, and the remainder no job was given (idle cores, unused memory, idle nodes);
times the PUE, the facility energy. Documented in docs/reports.md, "Node ledger".

Jobs + remainder = measured holds per month after rounding: each figure is rounded once and the
remainder is the rounded difference. The remainder is shown under two allocation policies side by side:
`none` (a line of its own) and `proportional` (each node interval's remainder shared out among the jobs
that ran on it by their share of its energy, or of its allocated core-hours, `ledger.share_by`; the
remainder of intervals without jobs stays a line of its own, "(no job ran)"). Node figures cover every
job, so the section is in the report only for a viewer who sees every job.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slurm_plugin.accounting import months, pue
from slurm_plugin.accounting.footprint import J_PER_KWH
from slurm_plugin.config import PueRule
from slurm_plugin.reports.monthly import group_label
from slurm_plugin.storage import ledger_reads, month_reads
from slurm_plugin.storage.readonly import Reader

COMPONENTS = ledger_reads.COMPONENTS
DIGITS = 6
IDLE = "(no job ran)"  # the proportional policy's line for intervals no job shared
NO_RECORD = "(no job record)"  # a job share whose job has no record in the database (yet)
TOTAL = (
    "month",
    "cluster",
    "nodes",
    "node_hours",
    "unmeasured_node_hours",
    "cpu_kwh",
    "dram_kwh",
    "gpu_kwh",
    "measured_kwh",
    "jobs_kwh",
    "remainder_kwh",
    "excess_kwh",
    "job_records_kwh",
    "pue",
    "facility_kwh",
    "jobs_facility_kwh",
    "remainder_facility_kwh",
)
SHARE = ("month", "cluster", "group", "jobs_kwh", "remainder_kwh", "with_remainder_kwh")


@dataclass(frozen=True)
class Settings:
    """What the section needs of the configuration."""

    timezone: str
    share_by: str = "energy"  # ledger.share_by: "energy" or "core_hours"
    pue: float = 1.0  # accounting.pue
    pue_rules: Sequence[PueRule] = ()  # accounting.pue_rules (node energy takes the rules of no partition)


def section(reader: Reader, document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The ledger section of a monthly report `document` (`monthly.build`): totals per month and
    cluster, and the remainder per group under the `proportional` policy."""
    by = document["metadata"]["by"]
    records = {(t["month"], t["cluster"]): t["it_kwh"] for t in document["totals"]}
    groups = {(r["month"], r["cluster"], r["group"]): r["it_kwh"] for r in document["rows"]}
    totals: list[dict[str, Any]] = []
    shares: list[dict[str, Any]] = []
    for name in document["metadata"]["months"]:
        month = months.parse(name, settings.timezone)
        for cluster, figures in sorted(_month_sums(reader, month, settings).items()):
            total = _total(name, cluster, figures, records.get((name, cluster), 0.0))
            totals.append(total)
            spread = _proportional(reader, month, cluster, by, settings.share_by)
            shares += _share_rows(name, cluster, total, spread, groups)
    return {"share_by": settings.share_by, "totals": totals, "shares": shares}


def _month_sums(reader: Reader, month: months.Month, settings: Settings) -> dict[str, dict[str, float]]:
    """Per cluster, the month's sums, split where a PUE rule changes so each piece takes its own PUE."""
    edges = [month.start_s, *pue.change_points(settings.pue_rules, month.start_s, month.end_s), month.end_s]
    found: dict[str, dict[str, float]] = {}
    for start, end in itertools.pairwise(edges):
        factor = pue.pue_at(settings.pue_rules, settings.pue, None, start)
        for row in ledger_reads.sums(reader, start, end):
            into = found.setdefault(row["cluster"], {"facility_j": 0.0, "jobs_facility_j": 0.0})
            measured = sum(row[f"{c}_j"] or 0.0 for c in COMPONENTS)
            jobs = sum(row[f"jobs_{c}_j"] or 0.0 for c in COMPONENTS)
            for key, value in row.items():
                if key == "nodes":  # a count, not a sum: the most any piece of the month saw
                    into[key] = max(into.get(key, 0.0), float(value or 0))
                elif key != "cluster":
                    into[key] = into.get(key, 0.0) + float(value or 0.0)
            into["facility_j"] += measured * factor
            into["jobs_facility_j"] += jobs * factor
    return found


def _total(name: str, cluster: str, f: dict[str, float], job_records_kwh: float) -> dict[str, Any]:
    measured = _kwh(sum(f[f"{c}_j"] for c in COMPONENTS))
    jobs = _kwh(sum(f[f"jobs_{c}_j"] for c in COMPONENTS))
    facility, jobs_facility = _kwh(f["facility_j"]), _kwh(f["jobs_facility_j"])
    return {
        "month": name,
        "cluster": cluster,
        "nodes": int(f["nodes"]),
        "node_hours": _r(f["covered_s"] / 3600),
        "unmeasured_node_hours": _r(f["unmeasured_s"] / 3600),
        **{f"{c}_kwh": _kwh(f[f"{c}_j"]) for c in COMPONENTS},
        "measured_kwh": measured,
        "jobs_kwh": jobs,
        "remainder_kwh": _r(measured - jobs),
        "excess_kwh": _kwh(sum(f[f"excess_{c}_j"] for c in COMPONENTS)),
        "job_records_kwh": job_records_kwh,
        "pue": _r(facility / measured) if measured > 0 else None,
        "facility_kwh": facility,
        "jobs_facility_kwh": jobs_facility,
        "remainder_facility_kwh": _r(facility - jobs_facility),
    }


def _proportional(
    reader: Reader, month: months.Month, cluster: str, by: str, share_by: str
) -> dict[str, float]:
    """Joules of the remainder per group: each interval's shared out by its jobs' `share_by`."""
    column = month_reads.GROUP_COLUMNS[by]
    group_of = ledger_reads.job_groups(reader, cluster, column, month.start_s, month.end_s)
    spread: dict[str, float] = {}
    weight_at = 2 if share_by == "energy" else 3
    for row in ledger_reads.with_jobs(reader, month.start_s, month.end_s):
        if row["cluster"] != cluster or not row["remainder_j"]:
            continue
        jobs = json.loads(row["job_shares_json"])
        weights = [share[weight_at] for share in jobs]
        if sum(weights) <= 0:
            weights = [share[3] for share in jobs]  # jobs that drew nothing: by core-hours
        whole = sum(weights)
        for share, weight in zip(jobs, weights, strict=True):
            key = (int(share[0]), int(share[1]))
            label = group_label(by, group_of[key]) if key in group_of else NO_RECORD
            spread[label] = spread.get(label, 0.0) + row["remainder_j"] * weight / whole
    return spread


def _share_rows(
    name: str,
    cluster: str,
    total: dict[str, Any],
    spread: dict[str, float],
    groups: dict[tuple[str, str, str], float],
) -> list[dict[str, Any]]:
    """A row per group (its jobs' kWh, its share of the remainder), then the remainder no job shared: the
    rounded rows add up to the total's remainder exactly."""
    labels = sorted({g for (m, c, g) in groups if (m, c) == (name, cluster)} | set(spread))
    rows = []
    for label in labels:
        jobs, share = groups.get((name, cluster, label), 0.0), _kwh(spread.get(label, 0.0))
        rows.append(_share(name, cluster, label, jobs, share))
    idle = _r(total["remainder_kwh"] - sum(row["remainder_kwh"] for row in rows))
    rows.append(_share(name, cluster, IDLE, 0.0, idle))
    return rows


def _share(name: str, cluster: str, group: str, jobs_kwh: float, remainder_kwh: float) -> dict[str, Any]:
    return {
        "month": name,
        "cluster": cluster,
        "group": group,
        "jobs_kwh": jobs_kwh,
        "remainder_kwh": remainder_kwh,
        "with_remainder_kwh": _r(jobs_kwh + remainder_kwh),
    }


def _kwh(joules: float) -> float:
    return _r(joules / J_PER_KWH)


def _r(value: float) -> float:
    return round(value, DIGITS) + 0.0  # + 0.0: never -0.0
