"""Finished-job records built by the real record builder from hand-made journals, and a fresh store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from slurm_plugin import record
from slurm_plugin.node.journal import Journal
from slurm_plugin.storage import Store

START = 1767225600.0  # 2026-01-01T00:00:00Z
# A footprint's headline fields, as `Store.save_footprint` takes them.
FOOTPRINT = {
    "it_energy_j": 3600.0,
    "facility_energy_j": 4320.0,
    "co2e_g": 0.3,
    "effective_g_per_kwh": 250.0,
    "rung": "measured_series",
    "measured_intensity_fraction": 1.0,
}
GPU = {
    "uuid": "GPU-5a3e1c2d-8f4b-4e6a-9d7c-1b2a3c4d5e6f",
    "model": "NVIDIA A100-SXM4-40GB",
    "pci_bus_id": "00000000:07:00.0",
    "minor": 0,
    "parent_uuid": None,
    "share": 1.0,
}


def make_record(
    job_id: int = 4242,
    node: str = "node001",
    restart_count: int = 0,
    rows: int = 4,
    start: float = START,
    step_s: float = 10.0,
    **changes: Any,
) -> dict[str, Any]:
    """A valid record of `rows` intervals of `step_s`, through `record.build`; `changes` override fields."""
    job = {
        "cluster": "hpc",
        "job_id": job_id,
        "restart_count": restart_count,
        "node": node,
        "user": "alice",
        "uid": 1000,
        "gid": 1000,
        "account": "physics",
        "partition": "gpu",
    }
    header = {"type": "header", "version": 1, "job": job, "start": start, "gpus": [GPU], "node_info": {}}
    intervals = [
        {
            "type": "interval",
            "t0": start + i * step_s,
            "t1": start + (i + 1) * step_s,
            "cpu": [100.0 + i, "measured"],
            "dram": [10.0, "apportioned"],
            "gpu": {GPU["uuid"]: [500.0, "measured"]},
            "cpuset": [0, 1, 2, 3],
        }
        for i in range(rows)
    ]
    document = record.build(Journal(header, intervals), start + rows * step_s, [])
    document.update(changes)
    return document


def count(store: Store, table: str) -> int:
    """Rows in `table` (a literal table name from the test)."""
    return store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608


def intervals(store: Store) -> int:
    """Timeline intervals stored, over all parts (each part's timeline is one packed row)."""
    return store.db.execute("SELECT COALESCE(SUM(intervals), 0) FROM timeline").fetchone()[0]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A fresh store, on SQLite and on PostgreSQL in turn (the `db_url` fixture)."""
    opened = Store.open(db_url, busy_timeout_s=5.0)
    yield opened
    opened.close()
