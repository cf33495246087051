"""Copy an SQLite accounting database into an empty PostgreSQL one (`jobcarbon db migrate`).

Row ids are kept, so footprints still point at their parts and every version stays in the history;
the identity sequences then continue after the largest id. One transaction on each side: the SQLite
file is read as one snapshot (after `jobcarbon db upgrade`'s migrations, which it gets first), and a
failure leaves the target as empty as it was. The columns are the target's: both schemas are this
version's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import sqlite_utils

from slurm_plugin.storage import dialect, migrations
from slurm_plugin.storage.errors import StoreError
from slurm_plugin.storage.sqlite_backend import SqliteBackend
from slurm_plugin.storage.store import Store

if TYPE_CHECKING:
    from slurm_plugin.storage.postgres_backend import PostgresBackend

# Parents before children (foreign keys); the tables with an identity `id`.
TABLES = (
    "jobs",
    "job_parts",
    "timeline",
    "intensity",
    "footprints",
    "footprint_months",
    "running_parts",
    "node_intervals",
)
IDENTITY = ("jobs", "job_parts", "footprints")
BATCH = 5000
# The keys (primary, unique, foreign) of the tables and of any referring to them, foreign keys first; the
# indexes that back no key.
CONSTRAINTS = """SELECT conrelid::regclass::text, quote_ident(conname), contype, pg_get_constraintdef(oid)
FROM pg_constraint WHERE contype IN ('p', 'u', 'f')
AND (conrelid = ANY(:tables::regclass[]) OR confrelid = ANY(:tables::regclass[]))
ORDER BY contype <> 'f', conrelid, conname"""
INDEXES = """SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index i
WHERE indrelid = ANY(:tables::regclass[]) AND NOT EXISTS (SELECT 1 FROM pg_constraint c
WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))"""
COLUMNS = """SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = :table ORDER BY ordinal_position"""


def copy_into(source_url: str, target: Store, progress: Callable[[str, int], None]) -> dict[str, int]:
    """Copy every row of the SQLite database at `source_url` (brought to this version first) into
    `target` (PostgreSQL, empty); rows per table."""
    if target.db.name != dialect.POSTGRESQL:
        raise StoreError("db migrate copies an SQLite database into a PostgreSQL one")
    try:
        dialect.sqlite_path(source_url)
    except dialect.UrlError:
        raise StoreError(f"--from {source_url[:80]!r}: expected sqlite:////absolute/path.db") from None
    upgrading = SqliteBackend.connect(source_url, 10.0, create=False)
    try:
        with upgrading.errors():
            migrations.upgrade(upgrading)
    finally:
        upgrading.close()
    source = sqlite_utils.Database(
        sqlite3.connect(f"file:{dialect.sqlite_path(source_url)}?mode=ro", uri=True)
    )
    try:
        source.execute("BEGIN")  # one snapshot of every table, whatever a deliverer does meanwhile
        return _copy_all(source, target, progress)
    except sqlite3.Error as exc:
        raise StoreError(f"{source_url}: {exc}") from None
    finally:
        source.close()


def _copy_all(
    source: sqlite_utils.Database, target: Store, progress: Callable[[str, int], None]
) -> dict[str, int]:
    with target.db.errors():
        holding = [t for t in TABLES if target.db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]  # noqa: S608
    if holding:
        raise StoreError(
            f"{target.db.where} already holds {', '.join(holding)}: migrate into an empty database"
        )
    copied: dict[str, int] = {}
    with target.db.errors():
        target.db.begin_write()
        try:
            keys = _drop_keys(target)
            target.db.execute(f"TRUNCATE {', '.join(TABLES)}")  # empty already: for COPY FREEZE
            for table in TABLES:
                copied[table] = _copy_table(source, target, table)
                progress(table, copied[table])
            for statement in keys:
                target.db.execute(statement)
            for table in IDENTITY:
                target.db.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - constant names
                    f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                )
            for table in TABLES:
                target.db.execute(f"ANALYZE {table}")
            target.db.commit()
        except BaseException:
            target.db.rollback()
            raise
    return copied


def _drop_keys(target: Store) -> list[str]:
    """Drop the tables' keys, foreign keys and indexes, and disable their triggers, in the caller's
    transaction: the statements that restore them after the COPY, in order. Building an index once is many
    times quicker than keeping it through millions of inserts, and a trigger's marks are not needed: a
    migrated database has no rollups yet, so every month is rolled up afresh (storage/rollups.py)."""
    tables = {"tables": list(TABLES)}
    constraints = target.db.execute(CONSTRAINTS, tables).fetchall()
    indexes = target.db.execute(INDEXES, tables).fetchall()
    for table, name, _, _ in constraints:
        target.db.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for name, _ in indexes:
        target.db.execute(f"DROP INDEX {name}")
    for table in TABLES:
        target.db.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    return [
        *(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}" for table, name, kind, definition
          in constraints if kind != "f"),
        *(definition for _, definition in indexes),
        *(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}" for table, name, kind, definition
          in constraints if kind == "f"),
        *(f"ALTER TABLE {table} ENABLE TRIGGER USER" for table in TABLES),
    ]  # fmt: skip


def _copy_table(source: sqlite_utils.Database, target: Store, table: str) -> int:
    names, types = zip(*target.db.execute(COLUMNS, {"table": table}).fetchall(), strict=True)
    columns = ", ".join(f'"{name}"' for name in names)  # the schema's own names, quoted all the same
    cursor = source.execute(f"SELECT {columns} FROM {table}")  # noqa: S608 - names from TABLES and schema
    count = 0
    postgres = cast("PostgresBackend", target.db)  # copy_into checked the dialect
    with postgres.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT BINARY, FREEZE)") as copy:
        copy.set_types(
            list(types)
        )  # binary: half the time of text, whose numbers both sides format and parse
        while rows := cursor.fetchmany(BATCH):
            for row in rows:
                copy.write_row(row)
            count += len(rows)
    if count != source[table].count:
        raise StoreError(f"{table}: {count} rows copied of {source[table].count}: was it written meanwhile?")
    return count
