"""The PostgreSQL backend (psycopg 3), for clusters whose nodes all deliver to one server.

The password never travels on a command line or in the URL: it comes from `database.password_file`
(a file only its owner may read) or from libpq's own PGPASSWORD / PGPASSFILE / ~/.pgpass. Timeouts are
short on purpose: a node that cannot reach the server keeps its records in the outbox for later.
Queries connect read-only (`default_transaction_read_only`), each statement bounded by what is left of
the request's deadline (`statement_timeout`).
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import time
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.numeric import FloatLoader

from slurm_plugin.storage import dialect
from slurm_plugin.storage.dialect import Params
from slurm_plugin.storage.errors import DeadlinePassed, RecordRejected, StoreError, StoreUnavailable

MIN_CONNECT_TIMEOUT_S = 2  # libpq's floor
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
SCHEMA_LOCK = 0x6A6F6263  # "jobc": pg_advisory_xact_lock key serialising `jobcarbon db upgrade`s


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """psycopg's exceptions as the store's own."""
    try:
        yield
    except (pg_errors.IntegrityError, pg_errors.DataError) as exc:
        raise RecordRejected(_one_line(exc)) from exc
    except pg_errors.QueryCanceled:  # statement_timeout, set by `PostgresBackend.query` for a deadline
        raise DeadlinePassed from None
    except pg_errors.InsufficientPrivilege as exc:
        raise StoreUnavailable(f"permission denied: {_one_line(exc)} (see docs/postgresql.md)") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise StoreUnavailable(_one_line(exc)) from exc
    except psycopg.DatabaseError as exc:  # a read-only standby after failover, a function not there yet
        raise StoreUnavailable(_one_line(exc)) from exc


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_password(path: str) -> str:
    """The first line of a password file that only its owner (root, or the caller) can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except PermissionError:
        raise StoreUnavailable(
            f"{path}: permission denied (users query through the service: set visibility.socket)"
        ) from None
    except OSError as exc:
        raise StoreError(f"database.password_file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_uid not in (0, os.geteuid()):
            raise StoreError(
                f"database.password_file {path}: must be a regular file readable by its owner only "
                "(chown root: and chmod 600)"
            )
        first = handle.read(4096).decode("utf-8", "replace").splitlines()
    if not first or not first[0].strip():
        raise StoreError(f"database.password_file {path}: empty")
    return first[0].strip()


def connect(
    url: str, password_file: str | None, timeout_s: float, read_only: bool = False
) -> psycopg.Connection:
    """An autocommit connection; `timeout_s` bounds the connect and any wait for a lock."""
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(f"database url: {_one_line(exc)}") from None
    settings = [f"-c lock_timeout={int(timeout_s * 1000)}"]
    if read_only:
        settings.append("-c default_transaction_read_only=on")
    params["options"] = " ".join(filter(None, [params.get("options", ""), *settings]))
    params.setdefault("connect_timeout", max(MIN_CONNECT_TIMEOUT_S, math.ceil(timeout_s)))
    # A server that vanishes mid-transaction (a crash, a network cut) is noticed within ~30 s rather than
    # TCP's hours, so a node's deliverer never sits on its lock.
    for name, value in KEEPALIVE.items():
        params.setdefault(name, value)
    params.setdefault("application_name", "jobcarbon")
    if password_file:
        params["password"] = read_password(password_file)
    with driver_errors():
        conn = psycopg.connect(autocommit=True, **params)
    # SUM over integers is NUMERIC in PostgreSQL: read it as float, as SQLite's REAL sums are.
    conn.adapters.register_loader("numeric", FloatLoader)
    return conn


class PostgresBackend:
    """One autocommit connection: transactions are begun and ended explicitly, as on SQLite."""

    name = dialect.POSTGRESQL

    def __init__(self, conn: psycopg.Connection, where: str, deadline: float | None = None):
        self.conn = conn
        self.where = where
        self.deadline = deadline  # time.monotonic(); bounds `query` only, the read path's one call

    @classmethod
    def connect(
        cls,
        url: str,
        busy_timeout_s: float,
        password_file: str | None = None,
        read_only: bool = False,
        deadline: float | None = None,
    ) -> PostgresBackend:
        conn = connect(url, password_file, busy_timeout_s, read_only)
        info = conn.info
        return cls(conn, f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}", deadline)

    def errors(self) -> contextlib.AbstractContextManager[None]:
        return driver_errors()

    def execute(self, sql: str, params: Params = (), binary: bool = False) -> psycopg.Cursor:
        """`binary` sends the parameters in binary format: psycopg sends a list (an array) as text otherwise,
        each blob in it hex-escaped, which cost ingest ~1 ms of client and ~0.4 ms of server CPU a part."""
        return self.conn.execute(dialect.postgres_sql(sql, binary), params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(dialect.postgres_sql(sql), rows)

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        self._bound_by_deadline()
        with self.conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(dialect.postgres_sql(sql), params).fetchall()

    def _bound_by_deadline(self) -> None:
        """Each query may take only what is left of the request's time (the server's statement_timeout)."""
        if self.deadline is None:
            return
        left_ms = int((self.deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            raise DeadlinePassed
        self.conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(left_ms),))

    def ddl(self, sql: str) -> None:
        self.conn.execute(dialect.postgres_ddl(sql))

    def copy(self, statement: str) -> contextlib.AbstractContextManager[psycopg.Copy]:
        """COPY ... FROM STDIN: bulk loading for `transfer`, many times faster than INSERTs."""
        return self.conn.cursor().copy(statement)

    def begin_write(self) -> None:
        self.conn.execute("BEGIN")

    def begin_schema_change(self) -> None:
        """Concurrent upgraders queue on an advisory lock held to the end of the transaction."""
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(psycopg.Error):  # a broken connection has no transaction left
            self.conn.execute("ROLLBACK")

    def has_table(self, name: str) -> bool:
        return bool(self.value("SELECT to_regclass(%s) IS NOT NULL", (name,)))

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """The one value a catalogue query returns (psycopg's placeholders; no row is a server fault)."""
        row = self.conn.execute(sql, params).fetchone()
        if row is None:
            raise StoreError(f"PostgreSQL returned no row for {sql.split()[1]}")
        return row[0]

    def close(self) -> None:
        self.conn.close()
