"""Delivery from a node: after a job's record is written, a detached deliverer stores it and its footprint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from slurm_plugin import config as config_module
from slurm_plugin.accounting.delivery import deliver_outbox
from slurm_plugin.outbox import pending, write
from slurm_plugin.storage import Store, dialect
from testbed import postgres
from tests.simnode import REPO, SimNode, wait_for
from tests.storage.conftest import make_record

DE_YEARLY = 342.0  # no series stored: the zone's yearly average
PUE = 1.3
KWH = 3.6e6
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens on port 1: connection refused


@dataclass(frozen=True)
class Database:
    """The database a simulated node delivers to."""

    url: str
    # The deliverer runs detached with a scrubbed environment (control.spawn), without the session's
    # PGPASSFILE: PostgreSQL's password reaches it through database.password_file, as on a real node.
    password_file: str = ""

    def open(self, create: bool = False) -> Store:
        return Store.open(self.url, 5.0, create, self.password_file)


def simnode(root: Path, database: Database, deliver: bool = True) -> SimNode:
    password = f'  password_file: "{database.password_file}"\n' if database.password_file else ""
    extra = (
        f'database:\n  url: "{database.url}"\n  busy_timeout_s: 5\n{password}'
        f"  deliver_from_nodes: {str(deliver).lower()}\n"
        f"accounting:\n  zone: DE\n  pue: {PUE}\n"
    )
    return SimNode(root, interval_s=0.1, extra_config=extra)


def on_postgres(server: postgres.Server, url: str) -> Database:
    return Database(url, str(server.password_file))


@pytest.fixture
def database(db_url: str, request: pytest.FixtureRequest) -> Database:
    """A fresh database, SQLite then PostgreSQL (the `db_url` fixture), with its schema created by hand
    (`jobcarbon ingest` or an admin would): a node's deliverer does not create one."""
    if dialect.backend_of(db_url) == dialect.POSTGRESQL:
        found = on_postgres(request.getfixturevalue("postgres_server"), db_url)
    else:
        found = Database(db_url)
    found.open(create=True).close()
    return found


@pytest.fixture
def node(tmp_path: Path, database: Database) -> Iterator[SimNode]:
    sim = simnode(tmp_path, database)
    yield sim
    sim.stop_agent()


def sqlite_database(root: Path) -> Database:
    """A SQLite database of the test's own, for what only SQLite has: a file that may not exist."""
    return Database(f"sqlite:///{root / 'db.sqlite'}")


def run_job(node: SimNode, job_id: int) -> None:
    """A job through prolog and epilog that used some CPU energy; its record is in the outbox or beyond."""
    node.set_rapl(1000.0, 100.0)
    node.job_cgroup(job_id, cpus="0", mem=2**30)
    node.hook("prolog", job_id)
    wait_for(lambda: node.intervals(job_id) >= 1, what="job sampled")
    for step in range(1, 4):
        seen = node.intervals(job_id)
        node.set_rapl(1000.0 + 40.0 * step, 100.0 + 4.0 * step)
        node.job_cgroup(job_id, cpus="0", cpu_s=0.05 * step, mem=2**30)
        wait_for(lambda s=seen: node.intervals(job_id) > s, what="next interval")
    node.hook("epilog", job_id)


def rounding_j(record: dict) -> float:
    """How far the timeline's sum may stray from the total: each row's three energies and the total
    are rounded to the millijoule (slurm_plugin/record.py)."""
    return 0.0005 * (3 * len(record["timeline"]["rows"]) + 1)


def stored_parts(database: Database) -> list[int]:
    store = database.open()
    try:
        return store.parts()
    finally:
        store.close()


def deliver_by_hand(node: SimNode) -> None:
    """Run a deliverer as the epilog would start one, and wait for it."""
    env = {**os.environ, "JOBCARBON_CONFIG": str(node.config), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "slurm_plugin.accounting.delivery"]
    done = subprocess.run(command, env=env, timeout=60, check=False)
    assert done.returncode == 0


def test_a_finished_job_reaches_the_database_with_its_footprint(node: SimNode, database: Database) -> None:
    run_job(node, 61)
    wait_for(
        lambda: not pending(node.outbox) and stored_parts(database),
        timeout_s=30,
        what="delivery",
    )
    store = database.open()
    try:
        (part_id,) = store.parts()
        part = store.part(part_id)
        assert (part["cluster"], part["job_id"], part["node"], part["partition"]) == (
            "sim",
            61,
            "simnode",
            "batch",
        )
        record = store.record(part_id)
        total_j = record["energy"]["total_joules"]
        assert total_j > 0
        found = store.footprint(part_id)
    finally:
        store.close()
    assert found is not None
    assert (found["version"], found["current"], found["rung"], found["zone"]) == (
        1,
        True,
        "zone_yearly",
        "DE",
    )
    assert found["it_energy_j"] == pytest.approx(total_j, abs=rounding_j(record))
    assert found["facility_energy_j"] == pytest.approx(PUE * found["it_energy_j"])
    assert found["co2e_g"] == pytest.approx(found["facility_energy_j"] / KWH * DE_YEARLY, rel=1e-9)


def gave_up(node: SimNode) -> bool:
    return node.log.exists() and "records stay in" in node.log.read_text()


def test_without_a_database_file_the_record_stays_and_none_is_created(tmp_path: Path) -> None:
    node = simnode(tmp_path, sqlite_database(tmp_path))
    try:
        run_job(node, 62)
        wait_for(lambda: gave_up(node), timeout_s=30, what="the deliverer giving up")
    finally:
        node.stop_agent()
    assert node.record(62) is not None
    assert not (tmp_path / "db.sqlite").exists()


def test_with_delivery_off_the_record_stays(tmp_path: Path, database: Database) -> None:
    node = simnode(tmp_path, database, deliver=False)
    try:
        run_job(node, 63)
        wait_for(lambda: node.agent_pid() is None, timeout_s=30, what="the idle agent exiting")
    finally:
        node.stop_agent()
    # A deliverer started by hand (as the epilog would) does nothing either.
    deliver_by_hand(node)
    assert node.record(63) is not None
    assert stored_parts(database) == []


def test_an_unreachable_server_keeps_the_record_until_the_url_is_fixed(
    tmp_path: Path, postgres_server: postgres.Server, postgres_url: str
) -> None:
    fixed = on_postgres(postgres_server, postgres_url)
    fixed.open(create=True).close()
    node = simnode(tmp_path, Database(UNREACHABLE, fixed.password_file))
    try:
        run_job(node, 64)
        wait_for(lambda: gave_up(node), timeout_s=30, what="the deliverer giving up")
        wait_for(lambda: node.agent_pid() is None, timeout_s=30, what="the idle agent exiting")
    finally:
        node.stop_agent()
    assert "127.0.0.1" in node.log.read_text()
    assert node.record(64) is not None
    assert stored_parts(fixed) == []

    node.config.write_text(node.config.read_text().replace(UNREACHABLE, fixed.url))
    for _ in range(2):  # a later pass delivers it, and another finds nothing left to deliver
        deliver_by_hand(node)
    # a deliverer the agent started on its way out may have taken the record first: either way, once
    wait_for(lambda: not pending(node.outbox), timeout_s=30, what="delivery")
    assert node.record(64) is None
    store = fixed.open()
    try:
        (part_id,) = store.parts()
        assert store.part(part_id)["job_id"] == 64
        (found,) = store.footprint_history(part_id)
    finally:
        store.close()
    assert (found["version"], found["rung"], found["zone"]) == (1, "zone_yearly", "DE")
    assert node.log.read_text().count("delivered 1 record(s)") == 1


def test_an_empty_outbox_opens_no_session(tmp_path: Path) -> None:
    # A timer runs the deliverer on every node: with nothing to deliver it must not cost the server a
    # session. The unreachable server shows whether it tried.
    outbox = tmp_path / "outbox"
    paths = config_module.Paths(outbox=outbox, quarantine=tmp_path / "quarantine")
    config = config_module.Config(paths=paths, database=config_module.Database(url=UNREACHABLE))
    said: list[str] = []
    assert deliver_outbox(config, lambda level, message: said.append(message)) == 0
    assert said == []
    write(outbox, make_record(status="running"))  # a running job's snapshot is work too
    assert deliver_outbox(config, lambda level, message: said.append(message)) == 0
    assert len(said) == 1
    assert "records stay in" in said[0]
