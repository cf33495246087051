"""Delivery from a node: after a job's record is written, a detached deliverer stores it and its footprint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_plugin.ingest import pending
from slurm_plugin.storage import Store
from tests.simnode import REPO, SimNode, wait_for

DE_YEARLY = 342.0  # no series stored: the zone's yearly average
PUE = 1.3
KWH = 3.6e6


def simnode(root: Path, deliver: bool = True) -> SimNode:
    db = root / "db.sqlite"
    extra = (
        f"database:\n  url: sqlite:///{db}\n  busy_timeout_s: 5\n"
        f"  deliver_from_nodes: {str(deliver).lower()}\n"
        f"accounting:\n  zone: DE\n  pue: {PUE}\n"
    )
    return SimNode(root, interval_s=0.1, extra_config=extra)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SimNode]:
    sim = simnode(tmp_path)
    yield sim
    sim.stop_agent()


def url(node: SimNode) -> str:
    return f"sqlite:///{node.root / 'db.sqlite'}"


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


def stored_parts(node: SimNode) -> list[int]:
    store = Store.open(url(node), 5.0, create=False)
    try:
        return store.parts()
    finally:
        store.close()


def test_a_finished_job_reaches_the_database_with_its_footprint(node: SimNode) -> None:
    Store.open(url(node), 5.0, create=True).close()
    run_job(node, 61)
    wait_for(lambda: not pending(node.outbox) and stored_parts(node), timeout_s=30, what="delivery")
    store = Store.open(url(node), 5.0, create=False)
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


def test_without_a_database_file_the_record_stays_and_none_is_created(node: SimNode) -> None:
    run_job(node, 62)
    wait_for(
        lambda: node.log.exists() and "records stay in" in node.log.read_text(),
        timeout_s=30,
        what="the deliverer giving up",
    )
    assert node.record(62) is not None
    assert not (node.root / "db.sqlite").exists()


def test_with_delivery_off_the_record_stays(tmp_path: Path) -> None:
    node = simnode(tmp_path, deliver=False)
    try:
        Store.open(url(node), 5.0, create=True).close()
        run_job(node, 63)
        wait_for(lambda: node.agent_pid() is None, timeout_s=30, what="the idle agent exiting")
    finally:
        node.stop_agent()
    # A deliverer started by hand (as the epilog would) does nothing either.
    env = {**os.environ, "JOBCARBON_CONFIG": str(node.config), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "slurm_plugin.delivery"], env=env, timeout=60, check=False)
    assert done.returncode == 0
    assert node.record(63) is not None
    assert stored_parts(node) == []
