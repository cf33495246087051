"""The schema's history as numbered migrations, and the upgrade that applies those a database lacks.

Each migration runs once, in order, in one transaction with the others (`upgrade`); a step is SQL from
schema.py or, for what SQL cannot do, a function. Released migrations never change: a new version
appends one.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from slurm_plugin import record, uncertainty
from slurm_plugin.storage import ledger_rollups, packed_timeline, rollups, schema, writer_functions
from slurm_plugin.storage.backend import Backend
from slurm_plugin.storage.errors import StoreError


@dataclass(frozen=True)
class OnlyOn:
    """A step for one backend only (PostgreSQL's functions and index names)."""

    backend: str
    step: str | Callable[[Backend], None]


# A migration step: SQL text, or a function for what SQL cannot do (repacking data).
Step = str | Callable[[Backend], None] | OnlyOn


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[Step, ...]


def _pack_timeline_rows(db: Backend) -> None:
    """Version 3: every part's rows in version 1's per-interval table become its packed timeline."""
    parts = [row[0] for row in db.execute("SELECT DISTINCT part_id FROM timeline_rows")]
    for part_id in parts:
        rows = db.execute(
            "SELECT t0_s, t1_s, cpu_j, dram_j, gpu_j FROM timeline_rows WHERE part_id = ? ORDER BY t0_s, id",
            [part_id],
        ).fetchall()
        params = {"part_id": part_id, "intervals": len(rows), "columns_f64": packed_timeline.encode(rows)}
        db.execute(schema.INSERT_TIMELINE, params)


def _digest_parts(db: Backend) -> None:
    """Version 9: the content digest of every part stored before, from the record kept with it; a
    record that cannot be read back keeps none (a redelivery of its part then counts as a duplicate)."""
    after = -1
    while rows := db.execute(schema.PARTS_TO_DIGEST, {"after": after}).fetchall():
        for part_id, record_zlib in rows:
            try:
                content = record.digest(json.loads(zlib.decompress(record_zlib)))
            except (zlib.error, ValueError):
                continue
            db.execute(schema.SET_PART_DIGEST, {"id": part_id, "content_sha256": content})
        after = rows[-1][0]


def _rebuild_jobs_sqlite(db: Backend) -> None:
    """Version 11 on SQLite, which cannot change a table's UNIQUE key in place: the jobs table rebuilt
    (schema.jobs_table) with every row and id, its indexes re-created from their stored text. A column
    the new table lacks stops the upgrade rather than being dropped. The backend turned foreign keys off
    for the schema change (SQLite's documented rebuild), so job_parts keeps its rows; checked before
    commit."""
    indexes = [row[0] for row in db.execute(_JOBS_INDEXES).fetchall()]
    columns = [row[1] for row in db.execute("PRAGMA table_info(jobs)").fetchall()]
    db.ddl(schema.jobs_table("jobs_v11"))
    kept = {row[1] for row in db.execute("PRAGMA table_info(jobs_v11)").fetchall()}
    if lost := [column for column in columns if column not in kept]:
        raise StoreError(f"{db.where}: migration 11 would drop jobs columns {lost}; upgrade stopped")
    names = ", ".join(columns)
    db.execute(f"INSERT INTO jobs_v11 ({names}) SELECT {names} FROM jobs")  # noqa: S608 - the table's own
    db.ddl("DROP TABLE jobs")
    db.ddl("ALTER TABLE jobs_v11 RENAME TO jobs")
    for sql in indexes:
        db.ddl(sql)
    if db.execute("PRAGMA foreign_key_check").fetchone() is not None:
        raise StoreError(f"{db.where}: migration 11 left job parts without their job; upgrade stopped")


_JOBS_INDEXES = "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' AND sql IS NOT NULL"


def _rekey_jobs_postgres(db: Backend) -> None:
    """Version 11 on PostgreSQL: the run column added, the old (cluster, job_id, restart_count) key
    dropped by whatever name it was given, the new key added; rows and ids stay as they are."""
    db.ddl(f"ALTER TABLE jobs ADD COLUMN {' '.join(schema.RUN_COLUMN)}")
    old = db.execute(_OLD_JOB_KEY).fetchall()
    for (name,) in old:
        db.ddl(f'ALTER TABLE jobs DROP CONSTRAINT "{name}"')
    db.ddl(f"ALTER TABLE jobs ADD CONSTRAINT jobs_run_key UNIQUE ({schema.JOB_KEY})")


# The unique constraint on exactly (cluster, job_id, restart_count), however PostgreSQL named it.
_OLD_JOB_KEY = """SELECT c.conname FROM pg_catalog.pg_constraint c
WHERE c.conrelid = 'jobs'::regclass AND c.contype = 'u'
  AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_catalog.pg_attribute a
       WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey))
      = ARRAY['cluster', 'job_id', 'restart_count']"""


def _case(column: str, factors: dict[str, float], otherwise: float) -> str:
    """SQL: the factor of the name in `column` (our constant tables' names and numbers only)."""
    whens = " ".join(f"WHEN '{name}' THEN {factor!r}" for name, factor in factors.items())
    return f"(CASE {column} {whens} ELSE {otherwise!r} END)"


def _energy_factor(end: str) -> str:
    """SQL: a footprint month's energy factor (`end` "low" or "high") from its part's stored methods."""
    factors = {m: getattr(b, end) for m, b in uncertainty.ENERGY.items()}
    widest = getattr(uncertainty.WIDEST_ENERGY, end)
    parts = " + ".join(
        f"COALESCE(footprint_months.{c}_j, 0) * {_case(f'p.{c}_method', factors, widest)}"
        for c in ("cpu", "dram", "gpu")
    )
    total = "COALESCE(footprint_months.cpu_j, 0) + COALESCE(footprint_months.dram_j, 0) + " + (
        "COALESCE(footprint_months.gpu_j, 0)"
    )
    return f"(CASE WHEN {total} > 0 THEN ({parts}) / ({total}) ELSE 1.0 END)"


def _fill_month_bands(db: Backend) -> None:
    """Version 14: the new columns of the months stored before, from what they kept. Conservative where
    the detail is gone: each component's joules count under its stored (least direct) method, the series'
    CO2e under the forecast band, the rest under the footprint's worst rung. `jobcarbon recompute` writes
    the exact figures (from the records' joules per method and the CO2e per rung)."""
    world = uncertainty.INTENSITY["world"]
    assignments = [
        f"{m}_j = "
        + " + ".join(f"CASE WHEN p.{c}_method = '{m}' THEN COALESCE(footprint_months.{c}_j, 0) ELSE 0 END"
                     for c in ("cpu", "dram", "gpu"))
        for m in ("measured", "integrated", "apportioned")
    ]  # fmt: skip
    for end in ("low", "high"):
        energy = _energy_factor(end)
        rung = {r: getattr(b, end) for r, b in uncertainty.INTENSITY.items()}
        series = getattr(uncertainty.INTENSITY["forecast_series"], end)
        assignments += [
            f"it_energy_{end}_j = footprint_months.it_energy_j * {energy}",
            f"facility_energy_{end}_j = footprint_months.facility_energy_j * {energy}",
            f"co2e_{end}_g = {energy} * (footprint_months.series_co2e_g * {series!r} + "
            f"(footprint_months.co2e_g - footprint_months.series_co2e_g) * "
            f"{_case('f.rung', rung, getattr(world, end))})",
        ]
    db.execute(
        f"UPDATE footprint_months SET {', '.join(assignments)} "  # noqa: S608 - constants only
        "FROM footprints f JOIN job_parts p ON p.id = f.part_id WHERE f.id = footprint_months.footprint_id"
    )


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "jobs, job parts, timelines, intensity, footprints",
        (
            schema.JOBS,
            schema.JOB_PARTS,
            schema.TIMELINE,
            "CREATE INDEX timeline_part ON timeline (part_id, t0_s)",
            "CREATE INDEX job_parts_end ON job_parts (end_s)",
            schema.INTENSITY,
            "CREATE INDEX intensity_zone_start ON intensity (zone, start_s, end_s)",
            schema.FOOTPRINTS,
            "CREATE UNIQUE INDEX footprints_current ON footprints (part_id) WHERE is_current = 1",
        ),
    ),
    # `jobcarbon <jobid>` and `jobcarbon jobs` on a million jobs: a job by its number, and the recent
    # jobs of a user, of an account or of everyone (slurm_plugin/storage/readonly.py).
    Migration(
        2,
        "indexes for job queries",
        (
            "CREATE INDEX jobs_job_id ON jobs (job_id)",
            "CREATE INDEX jobs_uid_end ON jobs (uid, end_s)",
            "CREATE INDEX jobs_user_end ON jobs (user_name, end_s)",
            "CREATE INDEX jobs_account_end ON jobs (account, end_s)",
            "CREATE INDEX jobs_end ON jobs (end_s)",
        ),
    ),
    Migration(
        3,
        "timelines packed, one row per part",
        (
            "ALTER TABLE timeline RENAME TO timeline_rows",
            OnlyOn("postgresql", "ALTER INDEX timeline_pkey RENAME TO timeline_rows_pkey"),
            schema.TIMELINE_PACKED,
            _pack_timeline_rows,
            "DROP TABLE timeline_rows",
        ),
    ),
    # `jobcarbon <jobid>` on a running job: the latest snapshot of each node's part, replaced until the
    # finished record arrives (and then deleted with it).
    Migration(
        4,
        "running job snapshots",
        (schema.RUNNING_PARTS, "CREATE INDEX running_parts_job ON running_parts (job_id)"),
    ),
    # Monthly reports (slurm_plugin/reports/monthly.py). Existing footprints get their months from
    # `jobcarbon recompute`, which fills them without adding a footprint version when nothing else changed.
    Migration(
        5,
        "footprint figures per month",
        (schema.FOOTPRINT_MONTHS, "CREATE INDEX footprint_months_month ON footprint_months (month)"),
    ),
    # PostgreSQL only: nodes deliver as a writer role that may run these functions and nothing else on
    # job tables (docs/postgresql.md); blobs are stored as they come, as SQLite stores them (the record is
    # zlib already, and compressing float64 columns again cost the server more CPU than the rest of a
    # delivery). SQLite has no roles; its version number moves on all the same.
    Migration(
        6,
        "functions for the writer role; blobs uncompressed",
        (
            OnlyOn("postgresql", writer_functions.create),
            *(
                OnlyOn("postgresql", f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL")
                for table, column in (
                    ("job_parts", "record_zlib"),
                    ("timeline", "columns_f64"),
                    ("running_parts", "record_zlib"),
                )
            ),
        ),
    ),
    # PostgreSQL only: the functions again, built with FIND_PART's new text, which finds a part through
    # the unique indexes however small the tables were when a session planned it; SQLite runs the new text
    # as it comes. Its version number moves on all the same.
    Migration(
        7,
        "writer functions: the duplicate check through the unique indexes",
        (OnlyOn("postgresql", writer_functions.create),),
    ),
    # PostgreSQL only: the functions again, the job row locked only where a part widens its span (a
    # many-node job's parts were stored one after another, each waiting on the one before). SQLite runs
    # the new statements as they come.
    Migration(
        8,
        "writer functions: a job's row locked only to widen it",
        (OnlyOn("postgresql", writer_functions.create),),
    ),
    # A record whose key matches a stored part but whose content differs is quarantined, not dropped as a
    # duplicate (accounting/ingest.py): each part keeps its content digest, which PostgreSQL's writer role
    # reads through a new function (granted to the roles that held the others).
    Migration(
        9,
        "each part's content digest, to tell a redelivery from a conflicting record",
        (schema.PART_DIGEST_COLUMN, _digest_parts, OnlyOn("postgresql", writer_functions.create)),
    ),
    # The job as Slurm reports it (state, exit code, name, limits, array ids; docs/record.md): `jobcarbon
    # jobs -s FAILED`, `jobcarbon <array id>`. PostgreSQL's functions again, for INSERT_JOB's new columns.
    Migration(
        10,
        "jobs: Slurm state, exit code, name, limits, requests, array and het ids, QOS, submit time",
        (
            *(f"ALTER TABLE jobs ADD COLUMN {name} {kind}" for name, kind in schema.JOB_FACTS),
            "CREATE INDEX jobs_array ON jobs (array_job_id, array_task_id)",
            "CREATE INDEX jobs_state_end ON jobs (slurm_state, end_s)",
            OnlyOn("postgresql", writer_functions.create),
        ),
    ),
    # Slurm reuses job ids (MaxJobId wraps to FirstJobId; a controller state reset starts again), so a job
    # is one run (slurm_plugin/runs.py): jobs keyed by (cluster, job_id, restart_count, run, uid), each
    # part and running snapshot with its record's run. Rows stored before keep their ids and get the
    # legacy run ''; none is merged or dropped. PostgreSQL's functions again, for the new statements.
    Migration(
        11,
        "jobs keyed by their run and user: Slurm reuses job ids",
        (
            OnlyOn("sqlite", _rebuild_jobs_sqlite),
            OnlyOn("postgresql", _rekey_jobs_postgres),
            f"ALTER TABLE job_parts ADD COLUMN {' '.join(schema.RUN_COLUMN)}",
            f"ALTER TABLE running_parts ADD COLUMN {' '.join(schema.RUN_COLUMN)}",
            OnlyOn("postgresql", writer_functions.create),
        ),
    ),
    # What a part wasted (idle GPUs and cores) and how busy its GPUs were (docs/attribution.md, "Waste"),
    # summed by `jobcarbon jobs` and the monthly report. New nullable columns, so no table is rebuilt;
    # PostgreSQL's functions again, for INSERT_PART's new columns (and their grants, as in version 9).
    Migration(
        12,
        "job parts: idle GPU energy, waste, GPU utilisation",
        (
            *(f"ALTER TABLE job_parts ADD COLUMN {name} {kind}" for name, kind in schema.PART_USE),
            OnlyOn("postgresql", writer_functions.create),
        ),
    ),
    # The node ledger (docs/methodology.md): each node's measured energy per interval, jobs or not, with its
    # jobs' part of it; PostgreSQL's writer role stores intervals through a new function.
    Migration(
        13,
        "node ledger: each node's measured energy per interval and its jobs' part",
        (
            schema.NODE_INTERVALS,
            "CREATE INDEX node_intervals_t1 ON node_intervals (t1_s)",
            OnlyOn("postgresql", writer_functions.create),
        ),
    ),
    # Uncertainty on every figure (docs/methodology.md#uncertainty): each footprint month's joules per
    # method, so "measured" counts only measured joules, and the low and high ends of its energy and CO2e,
    # so a report sums them as it sums the figures. Reports of a year of ten million jobs: the job's keys
    # in each footprint month, so a report reads one table (schema.FOOTPRINT_MONTH_KEYS). PostgreSQL's
    # functions again, for the new columns.
    Migration(
        14,
        "footprint months: joules per method, uncertainty bounds, the job's keys",
        (
            *(
                f"ALTER TABLE footprint_months ADD COLUMN {name} DOUBLE PRECISION"
                for name in schema.FOOTPRINT_MONTH_BANDS
            ),
            _fill_month_bands,
            *(
                f"ALTER TABLE footprint_months ADD COLUMN {name} {kind}"
                for name, _, kind in schema.FOOTPRINT_MONTH_KEYS
            ),
            "UPDATE footprint_months SET "  # noqa: S608 - constants
            + ", ".join(f"{name} = {source}" for name, source, _ in schema.FOOTPRINT_MONTH_KEYS)
            + f" FROM {schema.FOOTPRINT_MONTH_KEYS_FROM} WHERE f.id = footprint_months.footprint_id",
            "CREATE INDEX footprint_months_current ON footprint_months (month, is_current)",
            "DROP INDEX footprint_months_month",  # the new index leads with the month too
            OnlyOn("postgresql", writer_functions.create),
        ),
    ),
    # Monthly rollups (storage/rollups.py): a month's sums per job keys, which `jobcarbon rollup` builds
    # and a report reads while no footprint month of that month changed since; triggers mark the changes.
    Migration(
        15,
        "monthly rollups, and the marks of the months changed since",
        (
            rollups.MONTH_ROLLUPS,
            rollups.MONTH_ROLLUP_SOURCES,
            rollups.ROLLUP_MONTHS,
            rollups.MONTH_CHANGES,
            *rollups.INDEXES,
            *(OnlyOn("sqlite", trigger) for trigger in rollups.SQLITE_TRIGGERS),
            *(OnlyOn("postgresql", step) for step in rollups.POSTGRES_TRIGGER),
        ),
    ),
    # Ledger rollups (storage/ledger_rollups.py): a month's node-ledger sums and proportional shares,
    # which `jobcarbon rollup` builds and a report reads while no interval or job of the month changed
    # since; triggers mark the changes. The index on the intervals' start serves every month's read.
    Migration(
        16,
        "ledger rollups, and the marks of the intervals and jobs changed since",
        (
            ledger_rollups.LEDGER_ROLLUP_MONTHS,
            ledger_rollups.LEDGER_ROLLUP_SUMS,
            ledger_rollups.LEDGER_ROLLUP_SHARES,
            ledger_rollups.LEDGER_CHANGES,
            *ledger_rollups.INDEXES,
            *(OnlyOn("sqlite", trigger) for trigger in ledger_rollups.SQLITE_TRIGGERS),
            *(OnlyOn("postgresql", step) for step in ledger_rollups.POSTGRES_TRIGGERS),
        ),
    ),
    # The largest jobs and users of each month's groups in its rollup (storage/rollups.py), for `--top`;
    # the rollups built before hold none, so they are unbuilt: `jobcarbon rollup` builds them again.
    Migration(
        17,
        "monthly rollups: the largest jobs and users per group",
        (rollups.MONTH_ROLLUP_TOP, rollups.TOP_INDEX, "DELETE FROM rollup_months"),
    ),
]


def latest() -> int:
    """The version this code writes: the last migration's number."""
    return MIGRATIONS[-1].version


def current_version(db: Backend) -> int:
    """The version the database is at; 0 for an empty database."""
    if not db.has_table("schema_version"):
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def upgrade(db: Backend) -> int:
    """Apply the migrations the database lacks, in one transaction; return its version. Idempotent."""
    version = current_version(db)
    if version >= latest():
        return version
    db.begin_schema_change()  # concurrent openers of a fresh database queue here, not race the DDL
    try:
        db.ddl(schema.VERSION_TABLE)
        version = current_version(db)
        for migration in MIGRATIONS:
            if migration.version > version:
                _apply(db, migration)
                version = migration.version
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return version


def _apply(db: Backend, migration: Migration) -> None:
    for step in migration.statements:
        if isinstance(step, OnlyOn):
            if step.backend != db.name:
                continue
            step = step.step
        if isinstance(step, str):
            db.ddl(step)
        else:
            step(db)
    db.execute(
        "INSERT INTO schema_version (version, description, applied_at_s) VALUES (?, ?, ?)",
        (migration.version, migration.description, time.time()),
    )
