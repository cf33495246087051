"""The node ledger's reads (`reports/ledger.py`, `storage/ledger_rollups.py`): per cluster, a period's node
energy, its jobs' part and the remainder, and the remainder spread over the jobs' groups by the
`proportional` policy.

An interval counts in the period its start falls in, so the periods of a report never count one twice.
Sums are one GROUP BY; the remainder of an interval is measured - jobs where positive, and what jobs were
given beyond the node (rounding only: attribution never gives more) is summed apart as `excess`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from slurm_plugin.storage import dialect

Rows = Callable[[str, dict[str, Any]], list[dict[str, Any]]]  # Reader.rows or Backend.query
COMPONENTS = ("cpu", "dram", "gpu")
GROUP_KEYS = ("account", "user_name", "gid", "partition")  # the jobs' columns a report groups by
SHARE_BY = ("energy", "core_hours")  # ledger.share_by
DAY_S = 86400.0  # the intervals a spread holds in memory at once: a day's


def _remainder(c: str) -> str:
    return f"CASE WHEN {c}_j > jobs_{c}_j THEN {c}_j - jobs_{c}_j ELSE 0 END"


def _excess(c: str) -> str:
    return f"CASE WHEN {c}_j IS NOT NULL AND jobs_{c}_j > {c}_j THEN jobs_{c}_j - {c}_j ELSE 0 END"


_SUMMED = {
    "nodes": "COUNT(DISTINCT node)",
    "covered_s": "SUM(t1_s - t0_s)",
    "unmeasured_s": "SUM(unmeasured_s)",
    "jobs_core_s": "SUM(jobs_core_s)",
    **{
        name: sql
        for c in COMPONENTS
        for name, sql in (
            (f"{c}_j", f"SUM(COALESCE({c}_j, 0))"),
            (f"jobs_{c}_j", f"SUM(jobs_{c}_j)"),
            (f"remainder_{c}_j", f"SUM({_remainder(c)})"),
            (f"excess_{c}_j", f"SUM({_excess(c)})"),
        )
    },
}
SUM_COLUMNS = tuple(_SUMMED)
SUMS = (
    "SELECT {lead}cluster, "  # noqa: S608 - constant column names
    + ", ".join(f"{sql} AS {name}" for name, sql in _SUMMED.items())
    + " FROM node_intervals WHERE t0_s >= :start AND t0_s < :end GROUP BY cluster"
)

_WITH_JOBS = (
    "SELECT cluster, job_shares_json, "  # noqa: S608 - constant column names
    + " + ".join(_remainder(c) for c in COMPONENTS)
    + " AS remainder_j FROM node_intervals WHERE t0_s >= :start AND t0_s < :end AND jobs_core_s > 0"
)

_GROUPS = """SELECT cluster, job_id, restart_count, {keys} FROM jobs WHERE cluster = :cluster
AND job_id IN ({ids}) AND end_s >= :start AND start_s < :end"""
LOOKUP = 500  # job ids per query: within SQLite's and PostgreSQL's parameter limits

Spread = dict[tuple[str, str, str], dict[str | None, float]]  # (cluster, group key, share_by) -> joules
Job = tuple[str, int, int]  # cluster, job_id, restart_count: a job share's key
Groups = dict[Job, tuple[str, ...]]  # the JSON of each group key's value


def sums(rows: Rows, start_s: float, end_s: float) -> list[dict[str, Any]]:
    """Per cluster, the sums of the intervals starting in [start_s, end_s)."""
    return rows(SUMS.format(lead=""), {"start": start_s, "end": end_s})


def spread(rows: Rows, start_s: float, end_s: float, keys: Sequence[str], share_bys: Sequence[str]) -> Spread:
    """The remainder of the intervals starting in [start_s, end_s) that jobs shared, spread over their
    jobs by each of `share_bys` and summed per cluster and value of each of `keys` (GROUP_KEYS): the
    value as JSON, None for a share whose job has no record (yet). Read a day at a time, with only that
    day's jobs looked up (kept for the next day, whose intervals mostly share them): a month of 2,000
    nodes has close to a million jobs, too many to hold, and listing them by time scans the jobs index
    from the period's start to the end of the table."""
    found: Spread = {}
    known: Groups = {}
    day = start_s
    while day < end_s:
        shared = [
            (row, json.loads(row["job_shares_json"]))
            for row in rows(_WITH_JOBS, {"start": day, "end": min(day + DAY_S, end_s)})
            if row["remainder_j"]
        ]
        wanted = {(row["cluster"], int(s[0]), int(s[1])) for row, jobs in shared for s in jobs}
        groups = {job: known[job] for job in wanted if job in known}
        groups.update(_job_groups(rows, wanted - groups.keys(), (start_s, end_s + 3600), keys))
        for row, jobs in shared:
            _spread_interval(row["cluster"], row["remainder_j"], jobs, groups, keys, share_bys, found)
        known = groups
        day += DAY_S
    return found


def _spread_interval(
    cluster: str,
    remainder: float,
    jobs: list[list[Any]],
    groups: Groups,
    keys: Sequence[str],
    share_bys: Sequence[str],
    found: Spread,
) -> None:
    """Add one interval's remainder, shared by its jobs' energy (or core-hours)."""
    job_values = [groups.get((cluster, int(share[0]), int(share[1]))) for share in jobs]
    for share_by in share_bys:
        weights = [share[2 if share_by == "energy" else 3] for share in jobs]
        if sum(weights) <= 0:
            weights = [share[3] for share in jobs]  # jobs that drew nothing: by core-hours
        whole = sum(weights)
        for values, weight in zip(job_values, weights, strict=True):
            for index, key in enumerate(keys):
                into = found.setdefault((cluster, key, share_by), {})
                label = None if values is None else values[index]
                into[label] = into.get(label, 0.0) + remainder * weight / whole


def _job_groups(rows: Rows, jobs: set[Job], window: tuple[float, float], keys: Sequence[str]) -> Groups:
    """The group keys' values of `jobs`, from their records that ran in `window`: the period and an hour
    past it, as its last interval may start before its job's record. A share whose job has no record
    (yet) is left out."""
    found: Groups = {}
    ordered = sorted(jobs)
    for first in range(0, len(ordered), LOOKUP):
        batch = ordered[first : first + LOOKUP]
        for cluster in {job[0] for job in batch}:
            params: dict[str, Any] = {"cluster": cluster, "start": window[0], "end": window[1]}
            ids = dialect.placeholders("id", sorted({job[1] for job in batch if job[0] == cluster}), params)
            for r in rows(_GROUPS.format(keys=", ".join(keys), ids=ids), params):
                job = (r["cluster"], int(r["job_id"]), int(r["restart_count"]))
                if job in jobs:
                    found[job] = tuple(json.dumps(r[k]) for k in keys)
    return found
