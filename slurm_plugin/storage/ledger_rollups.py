"""Ledger rollups: each month's node-ledger sums per cluster and PUE piece, and its remainder spread over
the jobs' groups under the `proportional` policy, so a report of a year of 2,000 nodes' intervals reads a
few hundred rows a month rather than millions of intervals (docs/reports.md, "Monthly rollups").

A rollup is built for the month's bounds in the configured time zone and for the pieces its PUE rules cut
it into; a report whose month or pieces differ (the zone or the rules changed) reads the intervals.
Freshness: triggers add a span of time to `ledger_changes` for every node interval written (its start)
and every job row written (its span, an hour wider at the start, as `ledger_reads` reads a month's
jobs): a job record arriving after its intervals changes whose group their remainder goes to. A month's
rollup is read while no mark overlaps it. `unmark` takes the month's marks off (cutting marks that cross
its bounds) and its built row in one transaction, before the month is summed: a change committed later
leaves a mark, so the month is rebuilt later; a build cut short leaves the month unbuilt, never stale.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

from slurm_plugin.storage import ledger_reads
from slurm_plugin.storage.backend import Backend

_REAL = "DOUBLE PRECISION"
LEDGER_ROLLUP_MONTHS = f"""CREATE TABLE ledger_rollup_months (
    month TEXT PRIMARY KEY,
    start_s {_REAL} NOT NULL,
    end_s {_REAL} NOT NULL,
    pieces_json TEXT NOT NULL,
    built_at_s {_REAL} NOT NULL
)"""
LEDGER_ROLLUP_SUMS = f"""CREATE TABLE ledger_rollup_sums (
    month TEXT NOT NULL,
    piece_start_s {_REAL} NOT NULL,
    cluster TEXT NOT NULL,
    {", ".join(f"{name} {_REAL}" for name in ledger_reads.SUM_COLUMNS)}
)"""
LEDGER_ROLLUP_SHARES = f"""CREATE TABLE ledger_rollup_shares (
    month TEXT NOT NULL,
    cluster TEXT NOT NULL,
    group_key TEXT NOT NULL,
    share_by TEXT NOT NULL,
    group_json TEXT,
    remainder_j {_REAL} NOT NULL
)"""
LEDGER_CHANGES = f"CREATE TABLE ledger_changes (t0_s {_REAL} NOT NULL, t1_s {_REAL} NOT NULL)"
INDEXES = (
    "CREATE INDEX ledger_rollup_sums_month ON ledger_rollup_sums (month)",
    "CREATE INDEX ledger_rollup_shares_month ON ledger_rollup_shares (month, group_key, share_by)",
    "CREATE INDEX ledger_changes_t0 ON ledger_changes (t0_s)",
    "CREATE INDEX node_intervals_t0 ON node_intervals (t0_s)",  # a month's intervals, and the first
)
_JOB_KEYS = "start_s, end_s, account, user_name, gid, partition"
_MARK = "INSERT INTO ledger_changes (t0_s, t1_s) VALUES "
_JOB_MARK = "({row}.start_s - 3600, {row}.end_s)"  # ledger_reads reads a month's jobs an hour longer
# The marking triggers on SQLite ...
SQLITE_TRIGGERS = (
    "CREATE TRIGGER node_intervals_insert_marks AFTER INSERT ON node_intervals "
    f"BEGIN {_MARK}(NEW.t0_s, NEW.t0_s); END",
    "CREATE TRIGGER node_intervals_update_marks AFTER UPDATE ON node_intervals "
    f"BEGIN {_MARK}(OLD.t0_s, OLD.t0_s), (NEW.t0_s, NEW.t0_s); END",
    "CREATE TRIGGER node_intervals_delete_marks AFTER DELETE ON node_intervals "
    f"BEGIN {_MARK}(OLD.t0_s, OLD.t0_s); END",
    f"CREATE TRIGGER jobs_insert_marks AFTER INSERT ON jobs BEGIN {_MARK}{_JOB_MARK.format(row='NEW')}; END",
    f"CREATE TRIGGER jobs_update_marks AFTER UPDATE OF {_JOB_KEYS} ON jobs "
    f"BEGIN {_MARK}{_JOB_MARK.format(row='OLD')}, {_JOB_MARK.format(row='NEW')}; END",
    f"CREATE TRIGGER jobs_delete_marks AFTER DELETE ON jobs BEGIN {_MARK}{_JOB_MARK.format(row='OLD')}; END",
)


def _postgres_function(name: str, old: str, new: str) -> str:
    return f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        {_MARK}{old};
    END IF;
    IF TG_OP <> 'DELETE' THEN
        {_MARK}{new};
    END IF;
    RETURN NULL;
END $$"""


# ... and on PostgreSQL (a writer function runs as the owner, so the writer role needs no grant).
POSTGRES_TRIGGERS = (
    _postgres_function("note_interval_change", "(OLD.t0_s, OLD.t0_s)", "(NEW.t0_s, NEW.t0_s)"),
    "CREATE TRIGGER node_intervals_marks AFTER INSERT OR UPDATE OR DELETE ON node_intervals "
    "FOR EACH ROW EXECUTE FUNCTION note_interval_change()",
    _postgres_function("note_job_change", _JOB_MARK.format(row="OLD"), _JOB_MARK.format(row="NEW")),
    f"CREATE TRIGGER jobs_marks AFTER INSERT OR DELETE OR UPDATE OF {_JOB_KEYS} ON jobs "
    "FOR EACH ROW EXECUTE FUNCTION note_job_change()",
)

_OVERLAPS = "t0_s < :end AND t1_s >= :start"
_FRESH = f"""SELECT m.month, m.start_s, m.end_s, m.pieces_json FROM ledger_rollup_months m
WHERE m.month = :month AND m.start_s = :start AND m.end_s = :end
AND NOT EXISTS (SELECT 1 FROM ledger_changes WHERE {_OVERLAPS})"""  # noqa: S608 - constant text
_SUMS = f"""SELECT piece_start_s, cluster, {", ".join(ledger_reads.SUM_COLUMNS)} FROM ledger_rollup_sums
WHERE month = :month ORDER BY piece_start_s, cluster"""  # noqa: S608 - constant column names
_SHARES = """SELECT cluster, group_json, remainder_j FROM ledger_rollup_shares
WHERE month = :month AND group_key = :key AND share_by = :share_by"""
_SUMS_INTO = (
    f"INSERT INTO ledger_rollup_sums (month, piece_start_s, cluster, {', '.join(ledger_reads.SUM_COLUMNS)}) "
    + ledger_reads.SUMS.format(lead=":month, :start, ")
)
_SHARE_INTO = """INSERT INTO ledger_rollup_shares
    (month, cluster, group_key, share_by, group_json, remainder_j)
VALUES (:month, :cluster, :key, :share_by, :group_json, :remainder_j)"""


def fresh(rows: ledger_reads.Rows, month: str, start_s: float, end_s: float, edges: Sequence[float]) -> bool:
    """Whether `month`'s rollup holds the month [start_s, end_s) cut at `edges`, and nothing it sums
    changed since it was built."""
    found = rows(_FRESH, {"month": month, "start": start_s, "end": end_s})
    return bool(found) and json.loads(found[0]["pieces_json"]) == list(edges)


def sums(rows: ledger_reads.Rows, month: str) -> list[dict[str, Any]]:
    """The month's sums per PUE piece (its `piece_start_s`) and cluster, as ledger_reads.sums gives them."""
    return rows(_SUMS, {"month": month})


def spread(rows: ledger_reads.Rows, month: str, key: str, share_by: str) -> ledger_reads.Spread:
    """The month's remainder spread per cluster and group, as ledger_reads.spread gives it."""
    found: ledger_reads.Spread = {}
    for row in rows(_SHARES, {"month": month, "key": key, "share_by": share_by}):
        found.setdefault((row["cluster"], key, share_by), {})[row["group_json"]] = row["remainder_j"]
    return found


def unmark(db: Backend, month: str, start_s: float, end_s: float) -> None:
    """In the caller's transaction, before the month is summed: its marks off (the parts of marks outside
    the month kept) and its rollup unbuilt."""
    bounds = {"start": start_s, "end": end_s}
    db.execute(f"INSERT INTO ledger_changes (t0_s, t1_s) SELECT t0_s, :start - 0.001 FROM ledger_changes WHERE t0_s < :start AND {_OVERLAPS}", bounds)  # fmt: skip  # noqa: E501, S608
    db.execute(f"INSERT INTO ledger_changes (t0_s, t1_s) SELECT :end, t1_s FROM ledger_changes WHERE t1_s >= :end AND {_OVERLAPS}", bounds)  # fmt: skip  # noqa: E501, S608
    db.execute(f"DELETE FROM ledger_changes WHERE {_OVERLAPS}", bounds)  # noqa: S608 - constant text
    for table in ("ledger_rollup_months", "ledger_rollup_sums", "ledger_rollup_shares"):
        db.execute(f"DELETE FROM {table} WHERE month = :month", {"month": month})  # noqa: S608


def summed(rows: ledger_reads.Rows, start_s: float, end_s: float) -> ledger_reads.Spread:
    """What a month's rollup spreads: every grouping key, both policies' weights, read once."""
    return ledger_reads.spread(rows, start_s, end_s, ledger_reads.GROUP_KEYS, ledger_reads.SHARE_BY)


def save(
    db: Backend, month: str, start_s: float, end_s: float, edges: Sequence[float], spread: ledger_reads.Spread
) -> None:
    """In the caller's transaction, after `unmark`: the month's sums per piece, `spread` (`summed`) and
    the mark that it is built."""
    for piece_start, piece_end in itertools.pairwise(edges):
        db.execute(_SUMS_INTO, {"month": month, "start": piece_start, "end": piece_end})
    rows = [
        {"month": month, "cluster": c, "key": k, "share_by": s, "group_json": g, "remainder_j": j}
        for (c, k, s), groups in spread.items()
        for g, j in groups.items()
    ]
    if rows:
        db.executemany(_SHARE_INTO, rows)
    db.execute(
        "INSERT INTO ledger_rollup_months (month, start_s, end_s, pieces_json, built_at_s) "
        "VALUES (:month, :start, :end, :pieces, :now)",
        {
            "month": month,
            "start": start_s,
            "end": end_s,
            "pieces": json.dumps(list(edges)),
            "now": time.time(),
        },
    )


def span(db: Backend) -> tuple[float, float] | None:
    """The first and last interval start in the ledger, None for an empty ledger."""
    row = db.query("SELECT MIN(t0_s) AS first, MAX(t0_s) AS last FROM node_intervals")[0]
    return None if row["first"] is None else (float(row["first"]), float(row["last"]))


def prune(db: Backend, start_s: float, end_s: float) -> None:
    """Drop the marks wholly outside the ledger's months [start_s, end_s) (jobs on nodes that keep no
    ledger): no month there is built, and an interval written there later marks its own month."""
    db.execute(
        "DELETE FROM ledger_changes WHERE t1_s < :start OR t0_s >= :end", {"start": start_s, "end": end_s}
    )
