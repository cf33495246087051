"""The cluster exporter's reads (`query/cluster_metrics.py`): the grid intensity in use per zone and how
fresh each node's data is. Month-to-date sums per account and user are the monthly report's
(`month_reads.group_sums`). Both queries run on every scrape, so each uses an index: intensity's
(zone, start_s, end_s) and job_parts' end_s, within a look-back window."""

from __future__ import annotations

from typing import Any

from slurm_plugin.storage.readonly import Reader

# Per zone, the rows of the newest slot that started by now (one per source that has it).
_INTENSITY_NOW = """SELECT i.zone, i.source, i.start_s, i.end_s, i.g_per_kwh, i.estimated, i.forecast,
    i.fetched_at_s
FROM intensity i JOIN (
    SELECT zone, MAX(start_s) AS start_s FROM intensity WHERE start_s <= :now GROUP BY zone
) newest ON newest.zone = i.zone AND newest.start_s = i.start_s"""
_INTENSITY_END = "SELECT zone, MAX(end_s) AS end_s FROM intensity WHERE forecast = 0 GROUP BY zone"
_NEWEST_PART = """SELECT node, MAX(end_s) AS newest_s FROM job_parts WHERE end_s >= :since GROUP BY node"""
_NEWEST_SNAPSHOT = "SELECT node, MAX(updated_s) AS newest_s FROM running_parts GROUP BY node"


def intensity_now(reader: Reader, now: float) -> list[dict[str, Any]]:
    """Per zone, the stored slot in use at `now` (or the newest before it), one row per source."""
    return reader.rows(_INTENSITY_NOW, {"now": now})


def intensity_ends(reader: Reader) -> dict[str, float]:
    """Per zone, the end of its newest slot that is not a forecast (how far real data reaches)."""
    return {row["zone"]: row["end_s"] for row in reader.rows(_INTENSITY_END)}


def newest_data_per_node(reader: Reader, since: float) -> dict[str, float]:
    """Per node, the newest time its data reached: the end of its newest record part since `since`,
    or its newest running-job snapshot, whichever is later."""
    newest: dict[str, float] = {}
    for row in [*reader.rows(_NEWEST_PART, {"since": since}), *reader.rows(_NEWEST_SNAPSHOT)]:
        newest[row["node"]] = max(newest.get(row["node"], 0.0), row["newest_s"])
    return newest
