"""The node ledger's reads (`reports/ledger.py`): per cluster, a period's node energy, its jobs' part
and the remainder, and the job shares the `proportional` policy spreads the remainder by.

An interval counts in the period its start falls in, so the periods of a report never count one twice.
Sums are one GROUP BY; the remainder of an interval is measured - jobs where positive, and what jobs were
given beyond the node (rounding only: attribution never gives more) is summed apart as `excess`.
"""

from __future__ import annotations

from typing import Any

from slurm_plugin.storage.readonly import Reader

COMPONENTS = ("cpu", "dram", "gpu")


def _remainder(c: str) -> str:
    return f"CASE WHEN {c}_j > jobs_{c}_j THEN {c}_j - jobs_{c}_j ELSE 0 END"


def _excess(c: str) -> str:
    return f"CASE WHEN {c}_j IS NOT NULL AND jobs_{c}_j > {c}_j THEN jobs_{c}_j - {c}_j ELSE 0 END"


_SUMS = (
    "SELECT cluster, COUNT(DISTINCT node) AS nodes, SUM(t1_s - t0_s) AS covered_s, "  # noqa: S608 - constant column names
    "SUM(unmeasured_s) AS unmeasured_s, SUM(jobs_core_s) AS jobs_core_s, "
    + ", ".join(
        f"SUM(COALESCE({c}_j, 0)) AS {c}_j, SUM(jobs_{c}_j) AS jobs_{c}_j, "
        f"SUM({_remainder(c)}) AS remainder_{c}_j, SUM({_excess(c)}) AS excess_{c}_j"
        for c in COMPONENTS
    )
    + " FROM node_intervals WHERE t0_s >= :start AND t0_s < :end GROUP BY cluster"
)

_WITH_JOBS = (
    "SELECT cluster, job_shares_json, "  # noqa: S608 - constant column names
    + " + ".join(_remainder(c) for c in COMPONENTS)
    + " AS remainder_j FROM node_intervals WHERE t0_s >= :start AND t0_s < :end AND jobs_core_s > 0"
)

_GROUPS = """SELECT job_id, restart_count, {col} AS grp FROM jobs j
WHERE cluster = :cluster AND end_s >= :start AND start_s < :end"""


def sums(reader: Reader, start_s: float, end_s: float) -> list[dict[str, Any]]:
    """Per cluster, the sums of the intervals starting in [start_s, end_s)."""
    return reader.rows(_SUMS, {"start": start_s, "end": end_s})


def with_jobs(reader: Reader, start_s: float, end_s: float) -> list[dict[str, Any]]:
    """The intervals starting in [start_s, end_s) that some job shared, with their remainder."""
    return reader.rows(_WITH_JOBS, {"start": start_s, "end": end_s})


def job_groups(
    reader: Reader, cluster: str, column: str, start_s: float, end_s: float
) -> dict[tuple[int, int], Any]:
    """(job_id, restart_count) -> the job's group (`month_reads.GROUP_COLUMNS`' column) for the jobs of a
    cluster that ran in the period (a little wider: an interval may start before its job's record does)."""
    rows = reader.rows(
        _GROUPS.format(col=column), {"cluster": cluster, "start": start_s - 3600, "end": end_s}
    )
    return {(int(r["job_id"]), int(r["restart_count"])): r["grp"] for r in rows}
