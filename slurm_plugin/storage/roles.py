"""PostgreSQL grants for the two roles a cluster runs jobcarbon as, besides the owner that upgrades.

- writer (compute nodes): runs `writer_functions` and reads intensity (to compute a footprint) and the
  schema version; it cannot read jobs, parts or footprints, nor change anything but through the
  functions, which only add new parts and replace running snapshots.
- reader (the query service, report timers): reads every table, writes none.

Roles are created by the site's DBA (with LOGIN and a password); granting is idempotent, and rerun after
`jobcarbon db upgrade` it covers new tables.
"""

from __future__ import annotations

from psycopg import sql

from slurm_plugin.storage import writer_functions
from slurm_plugin.storage.errors import StoreError
from slurm_plugin.storage.postgres_backend import PostgresBackend

WRITER_TABLES = ("schema_version", "intensity")


def grant(db: PostgresBackend, writer: str | None, reader: str | None) -> list[str]:
    """Grant each given role its privileges in the current schema; the statements run, for the log."""
    done: list[str] = []
    with db.errors():
        schema = db.value("SELECT current_schema()")
        for role in filter(None, (writer, reader)):
            if not db.conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                raise StoreError(f"role {role!r} does not exist (createuser --pwprompt {role})")
        if db.value("SELECT has_schema_privilege('public', %s, 'CREATE')", (schema,)):
            raise StoreError(
                f"every role may create objects in schema {schema}, where the writer's functions run as "
                f"their owner: REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC first"
            )
        statements = (_writer(schema, writer) if writer else []) + (_reader(schema, reader) if reader else [])
        db.begin_write()
        try:
            for statement in statements:
                db.conn.execute(statement)
                done.append(statement.as_string(db.conn))
            db.commit()
        except BaseException:
            db.rollback()
            raise
    return done


def _writer(schema: str, role: str) -> list[sql.Composed]:
    who, where = sql.Identifier(role), sql.Identifier(schema)
    tables = sql.SQL(", ").join(sql.Identifier(schema, t) for t in WRITER_TABLES)
    functions = sql.SQL(", ").join(
        sql.Composed([where, sql.SQL("." + s)]) for s in writer_functions.SIGNATURES
    )
    return [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(where, who),
        sql.SQL("GRANT SELECT ON {} TO {}").format(tables, who),
        sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(functions, who),
    ]


def _reader(schema: str, role: str) -> list[sql.Composed]:
    who, where = sql.Identifier(role), sql.Identifier(schema)
    return [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(where, who),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(where, who),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(where, who),
    ]
