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
from slurm_plugin.config import Config, PueRule
from slurm_plugin.reports.monthly import group_label
from slurm_plugin.storage import ledger_reads, ledger_rollups, month_reads
from slurm_plugin.storage.readonly import Reader
from slurm_plugin.storage.store import Store

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


def settings(config: Config) -> Settings:
    """The section's settings from the configuration."""
    accounting = config.accounting
    return Settings(accounting.timezone, config.ledger.share_by, accounting.pue, accounting.pue_rules)


def section(reader: Reader, document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The ledger section of a monthly report `document` (`monthly.build`): totals per month and
    cluster, and the remainder per group under the `proportional` policy; from a month's rollup where it
    is current (storage/ledger_rollups.py), else from the intervals, with the same figures."""
    by = document["metadata"]["by"]
    key = month_reads.GROUP_COLUMNS[by].removeprefix("j.")
    records = {(t["month"], t["cluster"]): t["it_kwh"] for t in document["totals"]}
    groups = {(r["month"], r["cluster"], r["group"]): r["it_kwh"] for r in document["rows"]}
    rolled_up = reader.db.has_table("ledger_rollup_months")
    totals: list[dict[str, Any]] = []
    shares: list[dict[str, Any]] = []
    for name in document["metadata"]["months"]:
        month = months.parse(name, settings.timezone)
        edges = pieces(month, settings)
        if rolled_up and ledger_rollups.fresh(reader.rows, name, month.start_s, month.end_s, edges):
            piece_rows = ledger_rollups.sums(reader.rows, name)
            spread = ledger_rollups.spread(reader.rows, name, key, settings.share_by)
        else:
            piece_rows = [
                {**row, "piece_start_s": start}
                for start, end in itertools.pairwise(edges)
                for row in ledger_reads.sums(reader.rows, start, end)
            ]
            spread = ledger_reads.spread(
                reader.rows, month.start_s, month.end_s, (key,), (settings.share_by,)
            )
        for cluster, figures in sorted(_month_sums(piece_rows, settings).items()):
            total = _total(name, cluster, figures, records.get((name, cluster), 0.0))
            totals.append(total)
            labelled = _labelled(spread.get((cluster, key, settings.share_by), {}), by)
            shares += _share_rows(name, cluster, total, labelled, groups)
    return {"share_by": settings.share_by, "totals": totals, "shares": shares}


def pieces(month: months.Month, settings: Settings) -> list[float]:
    """The month's bounds and the times within it where a PUE rule changes: each piece takes its own PUE."""
    return [month.start_s, *pue.change_points(settings.pue_rules, month.start_s, month.end_s), month.end_s]


def roll_up(store: Store, settings: Settings) -> list[str]:
    """Rebuild the ledger rollup of every month of the ledger whose rollup is missing or out of date
    (`jobcarbon rollup`): the marks off in one transaction, the sums read, then written in another, so
    writers wait on neither the reading nor the Python pass over the shared intervals."""
    found = ledger_rollups.span(store.db)
    if found is None:
        with store.transaction():
            ledger_rollups.prune(store.db, 0.0, 0.0)
        return []
    built = []
    spanned = months.spanning(found[0], found[1], settings.timezone)
    for month in spanned:
        edges = pieces(month, settings)
        if ledger_rollups.fresh(store.db.query, month.name, month.start_s, month.end_s, edges):
            continue
        with store.transaction():
            ledger_rollups.unmark(store.db, month.name, month.start_s, month.end_s)
        spread = ledger_rollups.summed(store.db.query, month.start_s, month.end_s)
        with store.transaction():
            ledger_rollups.save(store.db, month.name, month.start_s, month.end_s, edges, spread)
        built.append(month.name)
    with store.transaction():
        ledger_rollups.prune(store.db, spanned[0].start_s, spanned[-1].end_s)
    return built


def _month_sums(piece_rows: list[dict[str, Any]], settings: Settings) -> dict[str, dict[str, float]]:
    """Per cluster, the month's sums from its pieces' (`piece_start_s`), each piece at its own PUE."""
    found: dict[str, dict[str, float]] = {}
    for row in piece_rows:
        factor = pue.pue_at(settings.pue_rules, settings.pue, None, row["piece_start_s"])
        into = found.setdefault(row["cluster"], {"facility_j": 0.0, "jobs_facility_j": 0.0})
        measured = sum(row[f"{c}_j"] or 0.0 for c in COMPONENTS)
        jobs = sum(row[f"jobs_{c}_j"] or 0.0 for c in COMPONENTS)
        for name in ledger_reads.SUM_COLUMNS:
            value = float(row[name] or 0.0)
            # nodes is a count, not a sum: the most any piece of the month saw
            into[name] = max(into.get(name, 0.0), value) if name == "nodes" else into.get(name, 0.0) + value
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


def _labelled(spread: dict[str | None, float], by: str) -> dict[str, float]:
    """Joules of the remainder per group label: a share whose job has no record is NO_RECORD's."""
    found: dict[str, float] = {}
    for value, joules in spread.items():
        label = NO_RECORD if value is None else group_label(by, json.loads(value))
        found[label] = found.get(label, 0.0) + joules
    return found


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
