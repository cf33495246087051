"""Monthly rollups: each month's footprint months summed per job keys, so a report reads a few thousand
rows for a month instead of every footprint month (a year of ten million jobs, docs/benchmarks.md).

A rollup row holds, per (month, cluster, account, user, uid, gid, partition), every sum the report's
group query takes (month_reads.SUMS and WASTE_SUMS), its job count and its GPU-hours per model; a
second table holds the CO2e per zone and set of sources, for the report's bases and metadata. A job's keys
are one row's (they come from the jobs table), so per-row job counts add up over any grouping by them.
Those are the rows of level ''; coarser levels sum them per grouping column alone (LEVELS), for
reports that see every job.

Freshness: a trigger on footprint_months (migration 15) adds a row to month_changes for every footprint
month written, retired or deleted, in the writer's own transaction; whatever writes (ingest, a writer
function on PostgreSQL, a recompute) marks its months. Inserts only, so deliverers never wait on one
another's marker rows. `build` deletes a month's change rows first and then sums the month, so a change
committed while it runs leaves a row behind (PostgreSQL reads each statement afresh), and the month is
rebuilt later. A report uses a month's rollup only while the month has one and no change row
(`month_reads.rolled_up`); otherwise it reads footprint_months as before, with the same figures.
"""

from __future__ import annotations

import json
import time
from typing import Any

from slurm_plugin.storage import schema
from slurm_plugin.storage.backend import Backend

# The job keys a rollup row is summed by: every grouping of the report and the viewer's condition.
KEYS = ("cluster", "account", "user_name", "uid", "gid", "partition")
_SUMMED = schema.FOOTPRINT_MONTH_SUMS
WASTE = schema.FOOTPRINT_MONTH_WASTE
_KEY_COLUMNS = "cluster TEXT NOT NULL, account TEXT, user_name TEXT, uid INTEGER, gid INTEGER, partition TEXT"
_REAL = "DOUBLE PRECISION"

MONTH_ROLLUPS = f"""
CREATE TABLE month_rollups (
    month TEXT NOT NULL,
    level TEXT NOT NULL,
    {_KEY_COLUMNS},
    jobs INTEGER NOT NULL,
    {", ".join(f"{name} {_REAL}" for name in (*_SUMMED, *WASTE))},
    computed_s {_REAL},
    received_s {_REAL},
    gpu_hours_json TEXT NOT NULL
)"""
MONTH_ROLLUP_SOURCES = f"""
CREATE TABLE month_rollup_sources (
    month TEXT NOT NULL,
    level TEXT NOT NULL,
    {_KEY_COLUMNS},
    zone TEXT,
    sources_json TEXT NOT NULL,
    co2e_g {_REAL}
)"""
# The largest jobs and users (`--top`) per month, grouping column, cluster and group, ranked as a report
# of a viewer of every job ranks them (TOP_RANKED), the first TOP_KEPT of each; group and item as text.
TOP_KEPT = 100
MONTH_ROLLUP_TOP = f"""
CREATE TABLE month_rollup_top (
    month TEXT NOT NULL,
    group_key TEXT NOT NULL,
    items TEXT NOT NULL,
    cluster TEXT NOT NULL,
    grp TEXT,
    item TEXT NOT NULL,
    {", ".join(f"{name} {_REAL}" for name in ("co2e_g", "co2e_low_g", "co2e_high_g", "facility_energy_j"))},
    place INTEGER NOT NULL
)"""
TOP_INDEX = "CREATE INDEX month_rollup_top_month ON month_rollup_top (month, group_key, items, place)"
ROLLUP_MONTHS = "CREATE TABLE rollup_months (month TEXT PRIMARY KEY, built_at_s DOUBLE PRECISION NOT NULL)"
MONTH_CHANGES = "CREATE TABLE month_changes (month TEXT NOT NULL)"
INDEXES = (
    "CREATE INDEX month_rollups_month ON month_rollups (month, level)",
    "CREATE INDEX month_rollup_sources_month ON month_rollup_sources (month, level)",
    "CREATE INDEX month_changes_month ON month_changes (month)",
)
# The marker triggers, one per kind of change, on SQLite ...
SQLITE_TRIGGERS = (
    "CREATE TRIGGER footprint_months_insert_marks AFTER INSERT ON footprint_months "
    "BEGIN INSERT INTO month_changes (month) VALUES (NEW.month); END",
    "CREATE TRIGGER footprint_months_update_marks AFTER UPDATE ON footprint_months "
    "BEGIN INSERT INTO month_changes (month) VALUES (NEW.month); INSERT INTO month_changes (month) "
    "SELECT OLD.month WHERE OLD.month <> NEW.month; END",
    "CREATE TRIGGER footprint_months_delete_marks AFTER DELETE ON footprint_months "
    "BEGIN INSERT INTO month_changes (month) VALUES (OLD.month); END",
)
# ... and one on PostgreSQL (a writer function runs as the owner, so the writer role needs no grant).
POSTGRES_TRIGGER = (
    """CREATE FUNCTION note_month_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO month_changes (month) VALUES (OLD.month);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR OLD.month <> NEW.month) THEN
        INSERT INTO month_changes (month) VALUES (NEW.month);
    END IF;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER footprint_months_marks AFTER INSERT OR UPDATE OR DELETE ON footprint_months "
    "FOR EACH ROW EXECUTE FUNCTION note_month_change()",
)

_KEYS = ", ".join(KEYS)
# A month's current footprint months as the report reads them: they carry the job keys (alias j).
CURRENT = """FROM footprint_months j
WHERE j.month IN ({months}) AND j.is_current = 1 AND {visible}"""
TOP_ITEMS = {"jobs": "j.job_id", "users": "j.user_name"}
_TOP_FIGURES = ("co2e_g", "co2e_low_g", "co2e_high_g", "facility_energy_j")
# The `limit` largest items (a job, or a user) per month and group, by CO2e; ties by the item.
_PER_ITEM = (
    "SELECT j.month, j.cluster, {col} AS grp, {item} AS item, "
    + ", ".join(f"SUM(j.{name}) AS {name}" for name in _TOP_FIGURES)
    + " "
    + CURRENT
    + " GROUP BY j.month, j.cluster, grp, item"
)
TOP_RANKED = (
    "SELECT * FROM (SELECT t.*, ROW_NUMBER() OVER (PARTITION BY t.month, t.cluster, t.grp "  # noqa: S608
    "ORDER BY t.co2e_g DESC, t.item) AS place FROM (" + _PER_ITEM + ") t) ranked WHERE place <= :limit"
)
_TOP_INTO = (
    "INSERT INTO month_rollup_top (month, group_key, items, cluster, grp, item, "  # noqa: S608
    + ", ".join(_TOP_FIGURES)
    + ", place) SELECT month, '{key}', '{items}', cluster, CAST(grp AS TEXT), CAST(item AS TEXT), "
    + ", ".join(_TOP_FIGURES)
    + ", place FROM ("
    + TOP_RANKED.format(col="j.{key}", item="{item}", months=":month", visible="1 = 1")
    + ") r"
)
TOP_READ = (
    "SELECT month, cluster, grp, item, "  # noqa: S608 - constant names
    + ", ".join(_TOP_FIGURES)
    + ", place FROM month_rollup_top WHERE month IN ({months}) AND group_key = :key AND items = :items"
    " AND place <= :limit"
)
_SUMS = (
    "COUNT(DISTINCT job) AS jobs, "
    + ", ".join(f"SUM({name}) AS {name}" for name in _SUMMED)
    + "".join(f", SUM({sql}) AS {name}" for name, sql in WASTE.items())
    + ", MAX(computed_at_s) AS computed_s, MAX(received_at_s) AS received_s"
)
# Groups without GPU-hours are summed into their rows in SQL; those with some (fewer) pass through
# Python, which adds their GPU-hours per model: a month's groups never all sit in memory.
_WITHOUT_GPUS = f"""INSERT INTO month_rollups ({{columns}})
SELECT month, '', {_KEYS}, {_SUMS}, '{{{{}}}}' FROM footprint_months
WHERE month = :month AND is_current = 1 GROUP BY month, {_KEYS} HAVING SUM(gpu_hours) = 0"""  # noqa: S608
_WITH_GPUS = f"""SELECT {_KEYS}, {_SUMS} FROM footprint_months
WHERE month = :month AND is_current = 1 GROUP BY {_KEYS} HAVING SUM(gpu_hours) > 0"""  # noqa: S608
_GPU = f"""SELECT {_KEYS}, gpu_hours_json FROM footprint_months
WHERE month = :month AND is_current = 1 AND gpu_hours > 0"""  # noqa: S608
_COLUMNS = ("month", "level", *KEYS, "jobs", *_SUMMED, *WASTE, "computed_s", "received_s", "gpu_hours_json")
_WITHOUT_GPUS = _WITHOUT_GPUS.format(columns=", ".join(_COLUMNS))
_INSERT = (
    f"INSERT INTO month_rollups ({', '.join(_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(':' + name for name in _COLUMNS)})"
)
_SOURCES = f"""INSERT INTO month_rollup_sources (month, level, {_KEYS}, zone, sources_json, co2e_g)
SELECT month, '', {_KEYS}, zone, sources_json, SUM(co2e_g) FROM footprint_months
WHERE month = :month AND is_current = 1 GROUP BY month, {_KEYS}, zone, sources_json"""  # noqa: S608

# Coarse levels: per grouping column alone, summed from the month's rows of every job key (level ''),
# for reports that see every job (an admin's): a few hundred rows a month where the job keys' rows are
# as many as the month's (account, user, partition) pairs, hundreds of thousands on a large site.
LEVELS = ("account", "user_name", "gid", "partition")
_LEVEL_SUMS = (
    "SUM(jobs) AS jobs, "
    + ", ".join(f"SUM({name}) AS {name}" for name in (*_SUMMED, *WASTE))
    + ", MAX(computed_s) AS computed_s, MAX(received_s) AS received_s"
)
_LEVEL_COLUMNS = ("month", "level", "cluster", "{col}", *_COLUMNS[_COLUMNS.index("jobs") :])
_LEVEL_WITHOUT_GPUS = f"""INSERT INTO month_rollups ({", ".join(_LEVEL_COLUMNS)})
SELECT month, '{{col}}', cluster, {{col}}, {_LEVEL_SUMS}, '{{{{}}}}' FROM month_rollups
WHERE month = :month AND level = '' GROUP BY month, cluster, {{col}} HAVING SUM(gpu_hours) = 0"""  # noqa: S608
_LEVEL_WITH_GPUS = f"""SELECT cluster, {{col}}, {_LEVEL_SUMS} FROM month_rollups
WHERE month = :month AND level = '' GROUP BY cluster, {{col}} HAVING SUM(gpu_hours) > 0"""  # noqa: S608
_LEVEL_GPU = """SELECT cluster, {col}, gpu_hours_json FROM month_rollups
WHERE month = :month AND level = '' AND gpu_hours > 0"""
_LEVEL_SOURCES = """INSERT INTO month_rollup_sources
    (month, level, cluster, {col}, zone, sources_json, co2e_g)
SELECT month, '{col}', cluster, {col}, zone, sources_json, SUM(co2e_g) FROM month_rollup_sources
WHERE month = :month AND level = '' GROUP BY month, cluster, {col}, zone, sources_json"""


def level(column: str, everything: bool) -> str:
    """The level of rollup rows a report grouped by `column` reads: its own for a viewer who sees every
    job, else the rows of every job key (the viewer's condition names uid and account)."""
    return column if everything else ""


def changed_months(db: Backend) -> list[str]:
    """The months whose rollup is missing or out of date, oldest first."""
    return sorted(row["month"] for row in db.query(_CHANGED_FAST))


# Months never rolled up: from the distinct months of footprint_months by its month index (the first
# month, then each next one by one index seek), not a scan of every footprint month.
_CHANGED_FAST = """WITH RECURSIVE found (month) AS (
    SELECT MIN(month) FROM footprint_months
    UNION ALL
    SELECT (SELECT MIN(month) FROM footprint_months WHERE month > found.month) FROM found
    WHERE found.month IS NOT NULL)
SELECT month FROM found WHERE month IS NOT NULL AND month NOT IN (SELECT month FROM rollup_months)
UNION SELECT DISTINCT month FROM month_changes"""


def build(db: Backend, month: str) -> None:
    """Rebuild one month's rollup in the caller's write transaction."""
    params = {"month": month}
    db.execute("DELETE FROM month_changes WHERE month = :month", params)  # first: see the module's text
    for table in ("month_rollups", "month_rollup_sources", "month_rollup_top", "rollup_months"):
        db.execute(f"DELETE FROM {table} WHERE month = :month", params)  # noqa: S608 - constant names
    db.execute(_WITHOUT_GPUS, params)
    _insert_with_gpus(db, month, "", KEYS, db.query(_WITH_GPUS, params), db.query(_GPU, params))
    db.execute(_SOURCES, params)
    for col in LEVELS:
        db.execute(_LEVEL_WITHOUT_GPUS.format(col=col), params)
        rows = db.query(_LEVEL_WITH_GPUS.format(col=col), params)
        _insert_with_gpus(
            db, month, col, ("cluster", col), rows, db.query(_LEVEL_GPU.format(col=col), params)
        )
        db.execute(_LEVEL_SOURCES.format(col=col), params)
    _build_top(db, params)
    now = {**params, "now": time.time()}
    db.execute("INSERT INTO rollup_months (month, built_at_s) VALUES (:month, :now)", now)


def _build_top(db: Backend, params: dict[str, Any]) -> None:
    """The month's largest jobs and users per group of each grouping column (a user's largest user is
    itself: none kept)."""
    for key in LEVELS:
        for items, item in TOP_ITEMS.items():
            if not (key == "user_name" and items == "users"):
                sql = _TOP_INTO.format(key=key, items=items, item=item)
                db.execute(sql, {**params, "limit": TOP_KEPT})


def _insert_with_gpus(
    db: Backend, month: str, level: str, keys: tuple[str, ...], rows: list[dict[str, Any]], gpus: list[dict]
) -> None:
    """Rollup rows of groups with GPU-hours (`rows`), each with its GPU-hours per model from `gpus`."""
    models = _models(gpus, keys)
    for row in rows:
        row.update({key: None for key in KEYS if key not in row}, month=month, level=level)
        row["gpu_hours_json"] = json.dumps(models.get(tuple(row[k] for k in keys), {}), sort_keys=True)
    db.executemany(_INSERT, rows)


def _models(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, float]]:
    """Per `keys`, the GPU-hours per model of the rows given."""
    found: dict[tuple[Any, ...], dict[str, float]] = {}
    for row in rows:
        models = found.setdefault(tuple(row[k] for k in keys), {})
        for model, hours in json.loads(row["gpu_hours_json"]).items():
            models[model] = models.get(model, 0.0) + hours
    return found


FRESH = """SELECT r.month FROM rollup_months r WHERE r.month IN ({months})
AND NOT EXISTS (SELECT 1 FROM month_changes c WHERE c.month = r.month)"""
