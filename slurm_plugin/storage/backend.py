"""What the store and the migrations need of a database connection, whichever backend it is."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Protocol

from slurm_plugin.storage import dialect
from slurm_plugin.storage.dialect import Params
from slurm_plugin.storage.errors import StoreError


class Backend(Protocol):
    """One connection in autocommit mode; statements use the shared (SQLite-placeholder) text."""

    name: str  # dialect.SQLITE or dialect.POSTGRESQL
    where: str  # for messages: the file, or the server and database

    def errors(self) -> contextlib.AbstractContextManager[None]: ...
    def execute(self, sql: str, params: Params = (), binary: bool = False) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...
    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]: ...
    def ddl(self, sql: str) -> None: ...
    def begin_write(self) -> None: ...
    def begin_schema_change(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def has_table(self, name: str) -> bool: ...
    def close(self) -> None: ...


def connect(
    url: str,
    busy_timeout_s: float,
    create: bool = True,
    password_file: str | None = None,
    read_only: bool = False,
    deadline: float | None = None,
) -> Backend:
    """A connection to the database the URL names; its driver is imported only when needed.

    `read_only` is the query path's mode: the database must exist and is never written; a query that
    runs past `deadline` (time.monotonic) is stopped with DeadlinePassed.
    """
    try:
        kind = dialect.backend_of(url)
    except dialect.UrlError as exc:
        raise StoreError(str(exc)) from None
    if kind == dialect.SQLITE:
        from slurm_plugin.storage.sqlite_backend import SqliteBackend

        if read_only:
            return SqliteBackend.connect_read_only(url, busy_timeout_s, deadline)
        return SqliteBackend.connect(url, busy_timeout_s, create)
    try:
        from slurm_plugin.storage.postgres_backend import PostgresBackend
    except ImportError as exc:
        raise StoreError(f"PostgreSQL needs psycopg: pip install 'jobcarbon[postgresql]' ({exc})") from None
    return PostgresBackend.connect(url, busy_timeout_s, password_file, read_only, deadline)
