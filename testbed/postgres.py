"""A PostgreSQL server on loopback for the PostgreSQL backend's tests, demos and benchmarks.

Debian's `postgresql` package, with a cluster of its own ("jobcarbon", port 5433) so a site's `main`
cluster is never touched. An admin role (`jobcarbon_admin`, CREATEROLE) owns the test database; its
password is in a root-only file, the way a site gives jobcarbon its password (`database.password_file`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLUSTER = "jobcarbon"
PORT = 5433
ADMIN = "jobcarbon_admin"
DATABASE = "jobcarbon_test"
STATE = Path("/var/lib/jobcarbon-testbed")
PASSWORD_FILE = STATE / "postgres-admin.password"
PACKAGES = ("postgresql",)
VERSIONS = Path("/usr/lib/postgresql")


class PostgresError(Exception):
    """The server could not be set up or reached; the message says why."""


@dataclass(frozen=True)
class Server:
    version: str
    url: str  # the admin's, without a password
    password_file: Path

    def ctl(self, action: str) -> None:
        """`pg_ctlcluster` start, stop or restart (fast: sessions are cut, as in a crash or failover)."""
        extra = ["--mode", "fast"] if action in ("stop", "restart") else []
        _run(["pg_ctlcluster", self.version, CLUSTER, action, *extra])
        if action != "stop":
            wait_ready(self.version)


def unavailable_reason() -> str | None:
    """Why this machine cannot run the test server, or None if it can."""
    if os.geteuid() != 0:
        return "the PostgreSQL test server needs root (pg_createcluster, runuser)"
    if installed_version() is None or shutil.which("pg_createcluster") is None:
        return "PostgreSQL is not installed; run `python3 -m testbed postgres --install-packages` or .ci/run"
    return None


def installed_version() -> str | None:
    """The newest PostgreSQL major version installed by Debian's packages."""
    try:
        found = sorted((p.name for p in VERSIONS.iterdir() if (p / "bin" / "postgres").exists()), key=int)
    except (FileNotFoundError, ValueError):
        return None
    return found[-1] if found else None


def ensure_packages() -> None:
    if installed_version() is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update"], env=env)
        _run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], env=env)


def ensure_server() -> Server:
    """Create (once) and start the cluster, the admin role and the test database; idempotent."""
    version = installed_version()
    if version is None:
        raise PostgresError("PostgreSQL is not installed")
    if not Path(f"/etc/postgresql/{version}/{CLUSTER}").exists():
        _run(
            [
                *("pg_createcluster", version, CLUSTER, "--port", str(PORT), "--start-conf", "manual"),
                *("-o", "listen_addresses=localhost", "-o", "max_connections=300"),
                *("--", "--auth-local=peer", "--auth-host=scram-sha-256"),
            ]
        )
    status = subprocess.run(["pg_ctlcluster", version, CLUSTER, "status"], capture_output=True, check=False)
    if status.returncode != 0:
        _run(["pg_ctlcluster", version, CLUSTER, "start"])
    wait_ready(version)
    password = _admin_password()
    _psql(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ADMIN}') THEN "
        f"CREATE ROLE {ADMIN} LOGIN CREATEROLE CREATEDB; END IF; END $$;"
        f"ALTER ROLE {ADMIN} PASSWORD '{password}';"
    )
    exists = _psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", capture=True)  # noqa: S608
    if not exists.strip():
        _psql(f"CREATE DATABASE {DATABASE} OWNER {ADMIN}")
    url = f"postgresql://{ADMIN}@127.0.0.1:{PORT}/{DATABASE}"
    return Server(version, url, PASSWORD_FILE)


def schema_url(server: Server, schema: str) -> str:
    """The server's URL with `schema` first on the search path: one database holds many test schemas."""
    return f"{server.url}?options=-csearch_path%3D{schema}"


def wait_ready(version: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PORT)], check=False).returncode:
        if time.monotonic() > deadline:
            raise PostgresError(f"PostgreSQL {version}/{CLUSTER} not ready after {timeout_s:.0f} s")
        time.sleep(0.1)


def _admin_password() -> str:
    """The admin's password, made once and kept root-only."""
    STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
    if PASSWORD_FILE.exists():
        return PASSWORD_FILE.read_text().strip()
    password = secrets.token_hex(16)
    fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


def server_cpu_s(version: str) -> float:
    """CPU seconds (user + system) the cluster's processes have used: the postmaster's own and its
    reaped children's (backends of closed connections), plus its children still running."""
    data = Path(f"/var/lib/postgresql/{version}/{CLUSTER}")
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile: its time is in the postmaster's children's now
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def create_schema(name: str) -> None:
    """An empty schema in the test database, owned by the admin (a database per test would be slower)."""
    _as_admin(f'CREATE SCHEMA "{name}"')


def drop_schema(name: str) -> None:
    _as_admin(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def schemas() -> list[str]:
    """The schemas of the test database."""
    return _psql("SELECT nspname FROM pg_namespace", capture=True, database=DATABASE).split()


def rename_schema(old: str, new: str) -> None:
    _as_admin(f'ALTER SCHEMA "{old}" RENAME TO "{new}"')


def _as_admin(sql: str) -> None:
    """One statement as the admin over loopback: quicker than a psql process, which tests pay per test."""
    import psycopg

    url = f"postgresql://{ADMIN}@127.0.0.1:{PORT}/{DATABASE}"
    with psycopg.connect(url, password=PASSWORD_FILE.read_text().strip(), autocommit=True) as admin:
        admin.execute(sql)


def create_role(name: str, password: str) -> None:
    """A login role for a test (a node's writer, a query service's reader)."""
    _as_admin(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")


def drop_role(name: str) -> None:
    """Drop a login role made by a test, with its grants in the test database."""
    _psql(f'DROP OWNED BY "{name}"; DROP ROLE "{name}"', database=DATABASE)


def _psql(sql: str, capture: bool = False, database: str = "postgres") -> str:
    """Run SQL as the `postgres` superuser over the cluster's Unix socket (peer authentication)."""
    command = ["runuser", "-u", "postgres", "--", "psql", "-p", str(PORT), "-d", database, "-XAtq"]
    return _run([*command, "-v", "ON_ERROR_STOP=1", "-c", sql], capture=capture)


def _run(command: list[str], capture: bool = True, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd="/")
    if done.returncode != 0:
        raise PostgresError(f"{' '.join(command[:4])}: {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout if capture else ""
