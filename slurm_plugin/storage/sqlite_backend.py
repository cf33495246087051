"""The SQLite backend: one file, WAL, writers queued on the busy timeout by `BEGIN IMMEDIATE`; readers
open it with `mode=ro`.

Plain sqlite3: a node's deliverer opens it once per pass, and sqlite_utils (which imports numpy when it
is installed) would cost more start-up time than a record takes to store.
"""

from __future__ import annotations

import contextlib
import grp
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from slurm_plugin.storage import dialect
from slurm_plugin.storage.dialect import Params
from slurm_plugin.storage.errors import DeadlinePassed, RecordRejected, StoreError, StoreUnavailable

_DIRECTORY = "{path} is a directory: database.url names the file (sqlite:////var/lib/jobcarbon/jobcarbon.db)"


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """sqlite3's exceptions as the store's own."""
    try:
        yield
    except (sqlite3.IntegrityError, OverflowError) as exc:
        raise RecordRejected(str(exc)) from exc
    except sqlite3.ProgrammingError:
        raise
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):  # by the progress handler of `connect_read_only`
            raise DeadlinePassed from None
        raise StoreUnavailable(str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise StoreUnavailable(str(exc)) from exc


class SqliteBackend:
    """One connection, in autocommit mode: transactions are begun and ended explicitly."""

    name = dialect.SQLITE

    def __init__(self, conn: sqlite3.Connection, where: str):
        self.conn = conn
        self.where = where
        self._keys_off = False  # foreign keys turned off for a schema change (begin_schema_change)

    @classmethod
    def connect(cls, url: str, busy_timeout_s: float, create: bool) -> SqliteBackend:
        """A missing directory is never created: an unmounted shared filesystem must not get a local
        copy. With `create=False` (delivery from compute nodes) a missing file is not created either."""
        path = dialect.sqlite_path(url)
        if Path(path).is_dir():
            raise StoreError(_DIRECTORY.format(path=path))
        if not create and not Path(path).exists():
            raise StoreUnavailable(f"{path} does not exist (create it with `jobcarbon db upgrade`)")
        if create and not Path(path).parent.is_dir():
            raise StoreUnavailable(f"cannot create {path}: directory {Path(path).parent} does not exist")
        if create:
            private_file(path)
        with driver_errors():
            conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
            try:
                return cls(_prepare(conn), path)
            except BaseException:
                conn.close()
                raise

    @classmethod
    def connect_read_only(cls, url: str, busy_timeout_s: float, deadline: float | None) -> SqliteBackend:
        """`mode=ro`, for queries; a progress handler stops a statement that runs past `deadline`."""
        path = dialect.sqlite_path(url)
        try:
            with open(path, "rb"):  # a clear "permission denied" rather than SQLite's "unable to open"
                pass
            conn = sqlite3.connect(
                Path(path).as_uri() + "?mode=ro", uri=True, timeout=busy_timeout_s, isolation_level=None
            )
        except PermissionError:
            raise StoreUnavailable(
                f"{path}: permission denied (in `own` visibility mode users query through the "
                "service: set visibility.socket)"
            ) from None
        except FileNotFoundError:
            raise StoreUnavailable(f"{path} does not exist (create it with `jobcarbon db upgrade`)") from None
        except IsADirectoryError:
            raise StoreUnavailable(_DIRECTORY.format(path=path)) from None
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"{path}: {exc}") from None
        if deadline is not None:
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        return cls(conn, path)

    def errors(self) -> contextlib.AbstractContextManager[None]:
        return driver_errors()

    def execute(self, sql: str, params: Params = (), binary: bool = False) -> sqlite3.Cursor:
        """`binary` is PostgreSQL's wire format; SQLite binds every value natively."""
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self.conn.executemany(sql, rows)

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def ddl(self, sql: str) -> None:
        self.conn.execute(sql)

    def begin_write(self) -> None:
        """IMMEDIATE takes the write lock up front, so a writer waits on the busy timeout instead of
        failing when it upgrades a read transaction; concurrent upgrades of a fresh file queue here."""
        self.conn.execute("BEGIN IMMEDIATE")

    def begin_schema_change(self) -> None:
        """Foreign keys off for the change (they cannot change inside a transaction): a table rebuilt
        as SQLite documents (lang_altertable.html, "other kinds of table schema changes") must not
        cascade its DROP into the tables that refer to it. On again when the change ends."""
        self.conn.execute("PRAGMA foreign_keys = OFF")
        self._keys_off = True
        self.begin_write()

    def commit(self) -> None:
        self.conn.execute("COMMIT")
        self._foreign_keys_on()

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._foreign_keys_on()

    def _foreign_keys_on(self) -> None:
        if self._keys_off:
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._keys_off = False

    def has_table(self, name: str) -> bool:
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return found.fetchone() is not None

    def close(self) -> None:
        self.conn.close()


DATABASE_GROUP = "jobcarbon"  # the query service's group (packaging/); users are not in it


def private_file(path: str) -> None:
    """Create a missing database file 0640 root:jobcarbon where that group exists, else 0600 (SQLite
    gives its -wal and -shm files the database's mode and owner). An existing database that all users
    may read gets one line on stderr and is left as it is: a site with `visibility.mode: all` may
    want that, and `chmod o-rwx` is the admin's to run."""
    try:
        group = grp.getgrnam(DATABASE_GROUP).gr_gid
    except KeyError:
        group = None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        _warn_if_open(path)
        return
    except OSError:
        return  # a missing directory, say: SQLite's connect reports it
    try:
        if group is not None:
            with contextlib.suppress(OSError):  # not root and not in the group: stays 0600
                os.fchown(fd, -1, group)
                os.fchmod(fd, 0o640)
    finally:
        os.close(fd)


def _warn_if_open(path: str) -> None:
    open_to_all = []
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(OSError):
            if os.lstat(name).st_mode & 0o007:
                open_to_all.append(name)
    if open_to_all:
        print(
            f"jobcarbon: warning: {' '.join(open_to_all)} readable by all users (with visibility.mode: own "
            f"they must not be: chmod o-rwx them)",
            file=sys.stderr,
        )


def _prepare(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Per-connection settings (the busy timeout is `connect`'s); WAL is set once and stays in the file,
    but asking costs nothing extra: it is the connection's first read of the database anyway."""
    conn.execute("PRAGMA foreign_keys = ON")
    # The default, stated: ingest unlinks a record's file once its commit returns, so the commit must
    # survive a power cut; NORMAL in WAL mode may roll the last commits back.
    conn.execute("PRAGMA synchronous = FULL")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (still {mode})")
    return conn
