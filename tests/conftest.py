"""Shared fixtures: the environment slurmd gives a prolog, and the job it describes."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from slurm_plugin.node.jobenv import JobInfo, from_env
from slurm_plugin.storage import dialect
from testbed import postgres

# A 26.05-style prolog environment (names from src/plugins/prep/script/prep_script_slurmd.c).
SLURM_ENV = {
    "SLURM_CLUSTER_NAME": "hpc",
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_RESTART_COUNT": "0",
    "SLURMD_NODENAME": "node001",
    "SLURM_JOB_USER": "alice",
    "SLURM_JOB_UID": "1000",
    "SLURM_JOB_GID": "1000",
    "SLURM_JOB_ACCOUNT": "physics",
    "SLURM_JOB_PARTITION": "batch",
    "SLURM_JOB_SLUID": "s0KZ3M1Q7H2B4X",
    "SLURM_JOB_CPUS_PER_NODE": "4(x2)",
    "SLURM_JOB_GPUS": "0,1",
    "CUDA_VISIBLE_DEVICES": "0,1",
}


@pytest.fixture
def slurm_env() -> dict[str, str]:
    """A fresh copy of a valid prolog environment, for tests to spoil one variable at a time."""
    return dict(SLURM_ENV)


@pytest.fixture
def job_info(slurm_env: dict[str, str]) -> JobInfo:
    return from_env(slurm_env)


@pytest.fixture
def slurmd_umask() -> Iterator[None]:
    """A fixed umask (022, the usual daemon one), so file modes do not depend on the test runner."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


# --- databases ------------------------------------------------------------------------------------

REQUIRE_POSTGRES_ENV = "JOBCARBON_REQUIRE_POSTGRES"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[postgres.Server]:
    """The loopback test server (testbed/postgres.py), its admin's password in a PGPASSFILE.

    Skipped where it cannot run, except under JOBCARBON_REQUIRE_POSTGRES=1 (CI), where that fails."""
    reason = postgres.unavailable_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {reason}")
        pytest.skip(reason)
    server = postgres.ensure_server()
    password = server.password_file.read_text().strip()
    pgpass = tmp_path_factory.mktemp("postgres") / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.PORT}:*:{postgres.ADMIN}:{password}\n")
    pgpass.chmod(0o600)
    previous = os.environ.get("PGPASSFILE")
    os.environ["PGPASSFILE"] = str(pgpass)
    yield server
    if previous is None:
        os.environ.pop("PGPASSFILE", None)
    else:
        os.environ["PGPASSFILE"] = previous


@contextlib.contextmanager
def _fresh_schema(server: postgres.Server) -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema of the test database, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    postgres.create_schema(name)
    yield postgres.schema_url(server, name)
    postgres.drop_schema(name)


@pytest.fixture
def postgres_url(postgres_server: postgres.Server) -> Iterator[str]:
    with _fresh_schema(postgres_server) as url:
        yield url


@pytest.fixture(params=[dialect.SQLITE, dialect.POSTGRESQL])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend in turn: the suites that take it run on both."""
    if request.param == dialect.SQLITE:
        return f"sqlite:///{tmp_path / 'jobcarbon.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module", params=[dialect.SQLITE, dialect.POSTGRESQL])
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`db_url` for a module that builds one database for all its tests: one per backend in turn."""
    if request.param == dialect.SQLITE:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'jobcarbon.db'}"
        return
    with _fresh_schema(request.getfixturevalue("postgres_server")) as url:
        yield url


@dataclass(frozen=True)
class Role:
    name: str
    url: str  # the test schema's (`postgres_url`), as this role
    password_file: str


@pytest.fixture
def make_role(postgres_server: postgres.Server, postgres_url: str, tmp_path: Path) -> Iterator[Callable]:
    """Login roles with a password file each, dropped afterwards: make_role("writer") -> Role."""
    made: list[str] = []

    def make(kind: str) -> Role:
        name = f"jc_{kind}_{uuid.uuid4().hex[:10]}"
        password = uuid.uuid4().hex
        postgres.create_role(name, password)
        made.append(name)
        secret = tmp_path / f"{name}.password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        return Role(name, postgres_url.replace(f"{postgres.ADMIN}@", f"{name}@"), str(secret))

    yield make
    for name in made:
        postgres.drop_role(name)
