"""Node records (the node ledger) go into the database exactly once, on both backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slurm_plugin import node_record
from slurm_plugin import outbox as outbox_files
from slurm_plugin.accounting.ingest import IngestResult
from slurm_plugin.accounting.node_ingest import ingest_node_outbox
from slurm_plugin.storage import Store, roles

START = 1767225600.0  # 2026-01-01T00:00:00Z


def interval(t0: float, cpu_j: float = 3000.0, jobs_cpu_j: float = 1000.0) -> dict[str, Any]:
    return {
        "t0_s": t0,
        "t1_s": t0 + 300.0,
        "cpu_j": cpu_j,
        "cpu_method": "measured",
        "dram_j": 300.0,
        "dram_method": "measured",
        "gpu_j": None,
        "gpu_method": None,
        "jobs_cpu_j": jobs_cpu_j,
        "jobs_dram_j": 100.0,
        "jobs_gpu_j": 0.0,
        "jobs_core_s": 600.0,
        "unmeasured_s": 0.0,
        "job_shares": [[42, 0, jobs_cpu_j + 100.0, 600.0]],
        "notes": [],
    }


def document(*intervals: dict[str, Any]) -> dict[str, Any]:
    return node_record.build("c1", "n1", "boot-1", 8, list(intervals))


def write(outbox: Path, doc: dict[str, Any]) -> Path:
    return outbox_files.write_node(outbox, doc, node_record.filename(doc), fsync=False)


def stored(store: Store) -> list[dict[str, Any]]:
    return store.db.query("SELECT t0_s, cpu_j, jobs_cpu_j, job_shares_json FROM node_intervals ORDER BY t0_s")


def test_a_node_record_is_stored_once_and_a_redelivery_is_a_duplicate(tmp_path: Path, db_url: str) -> None:
    outbox, quarantine = tmp_path / "outbox", tmp_path / "quarantine"
    store = Store.open(db_url, 5.0)
    try:
        doc = document(interval(START), interval(START + 300))
        path = write(outbox, doc)
        assert ingest_node_outbox(store, outbox, quarantine) == IngestResult(stored=1)
        assert not path.exists()
        write(outbox, doc)
        assert ingest_node_outbox(store, outbox, quarantine) == IngestResult(duplicates=1)
        rows = stored(store)
        assert [r["t0_s"] for r in rows] == [START, START + 300]
        assert json.loads(rows[0]["job_shares_json"]) == [[42, 0, 1100.0, 600.0]]
    finally:
        store.close()


def test_an_interval_stored_with_other_content_is_a_conflict(tmp_path: Path, db_url: str) -> None:
    outbox, quarantine = tmp_path / "outbox", tmp_path / "quarantine"
    store = Store.open(db_url, 5.0)
    try:
        write(outbox, document(interval(START)))
        ingest_node_outbox(store, outbox, quarantine)
        changed = document(interval(START, cpu_j=9999.0), interval(START + 300))
        write(outbox, changed)
        assert ingest_node_outbox(store, outbox, quarantine) == IngestResult(conflicts=1)
        name = node_record.filename(changed)
        assert sorted(p.name for p in quarantine.iterdir()) == [name, f"{name}.reason"]
        assert "interval t0_s 1767225600.0" in (quarantine / f"{name}.reason").read_text()
        assert [r["cpu_j"] for r in stored(store)] == [3000.0, 3000.0]  # the old one kept
    finally:
        store.close()


def test_a_malformed_node_record_is_quarantined_naming_the_field(tmp_path: Path, db_url: str) -> None:
    outbox, quarantine = tmp_path / "outbox", tmp_path / "quarantine"
    bad = document(interval(START))
    bad["intervals"][0]["jobs_cpu_j"] = -1
    write(outbox, bad)
    store = Store.open(db_url, 5.0)
    try:
        assert ingest_node_outbox(store, outbox, quarantine) == IngestResult(quarantined=1)
    finally:
        store.close()
    reason = next(quarantine.glob("*.reason")).read_text()
    assert "intervals[0].jobs_cpu_j: must be a number >= 0, not -1" in reason


@pytest.mark.parametrize("field", ["t0_s", "job_shares", "notes"])
def test_parse_names_a_missing_interval_field(field: str) -> None:
    doc = document(interval(START))
    del doc["intervals"][0][field]
    with pytest.raises(node_record.RecordError, match=rf"intervals\[0\]\.{field}: missing"):
        node_record.parse(json.dumps(doc).encode())


def test_the_writer_role_stores_node_intervals_through_its_function(
    tmp_path: Path, postgres_url: str, make_role: Callable
) -> None:
    owner = Store.open(postgres_url, 5.0)
    role = make_role("writer")
    roles.grant(owner.db, writer=role.name, reader=None)
    writer = Store.open(role.url, 5.0, create=False, password_file=role.password_file)
    outbox, quarantine = tmp_path / "outbox", tmp_path / "quarantine"
    try:
        write(outbox, document(interval(START)))
        assert ingest_node_outbox(writer, outbox, quarantine) == IngestResult(stored=1)
        write(outbox, document(interval(START)))
        assert ingest_node_outbox(writer, outbox, quarantine) == IngestResult(duplicates=1)
        assert [r["t0_s"] for r in stored(owner)] == [START]
    finally:
        writer.close()
        owner.close()
