"""Running jobs: snapshots into the database, the summary so far, the projection, the hand-over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slurm_plugin.accounting import snapshots
from slurm_plugin.config import Visibility
from slurm_plugin.outbox import RUNNING_DIR, filename
from slurm_plugin.query import running, visibility
from slurm_plugin.storage import readonly
from tests.jobdb import SETTINGS, open_store
from tests.storage.conftest import make_record

EVERYONE = visibility.scope_for(visibility.Viewer(0, "root"), Visibility(mode="all"))


def _snapshot(outbox: Path, **changes: object) -> dict:
    record = make_record(rows=6, step_s=300.0, **changes)  # 30 minutes at 610-615 W
    record["status"] = "running"
    directory = outbox / RUNNING_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename(record)).write_text(json.dumps(record))
    return record


def _summary(url: str, job_id: int) -> dict:
    reader = readonly.Reader.open(url)
    try:
        return running.job_or_running(reader, EVERYONE, job_id, None)
    finally:
        reader.close()


def test_a_snapshot_becomes_a_running_summary_with_a_projection(tmp_path: Path, db_url: str) -> None:
    store = open_store(db_url)
    record = _snapshot(tmp_path / "outbox")
    assert snapshots.ingest_snapshots(store, tmp_path / "outbox", SETTINGS, lambda *_: None) == 1
    assert not list((tmp_path / "outbox" / RUNNING_DIR).iterdir())
    summary = _summary(db_url, record["job_id"])
    assert summary["state"] == "running"
    assert summary["energy"]["total_j"] == pytest.approx(record["energy"]["total_joules"])
    recent = [r for r in record["timeline"]["rows"] if r[0] >= record["elapsed_s"] - 900]
    power = sum(r[2] + r[3] + r[4] for r in recent) / sum(r[1] - r[0] for r in recent)
    assert summary["progress"]["recent_power_w"] == pytest.approx(power, abs=1e-3)
    projected = running.project(summary, time_limit_s=3600.0)
    it_j = summary["carbon"]["it_energy_j"]
    assert projected["energy_j"] == pytest.approx(it_j + power * (3600.0 - 1800.0), rel=1e-3)
    expected_g = summary["carbon"]["co2e_g"] * projected["energy_j"] / it_j
    assert projected["co2e_g"] == pytest.approx(expected_g, abs=1e-4)
    assert running.project(summary, time_limit_s=None) is None
    store.close()


def test_the_finished_record_replaces_the_snapshot(tmp_path: Path, db_url: str) -> None:
    store = open_store(db_url)
    _snapshot(tmp_path / "outbox")
    snapshots.ingest_snapshots(store, tmp_path / "outbox", SETTINGS, lambda *_: None)
    final = make_record(rows=8, step_s=300.0)
    assert store.add_part(final) is not None
    summary = _summary(db_url, final["job_id"])
    assert summary["state"] == "completed"
    assert store.upsert_running(final | {"status": "running"}, b"{}", None) is False  # too late
    store.close()


def test_a_malformed_snapshot_is_dropped_not_quarantined(tmp_path: Path, db_url: str) -> None:
    store = open_store(db_url)
    bad = tmp_path / "outbox" / RUNNING_DIR / "hpc_1_0_n.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    lines: list[str] = []
    assert (
        snapshots.ingest_snapshots(store, tmp_path / "outbox", SETTINGS, lambda _l, m: lines.append(m)) == 0
    )
    assert not bad.exists()
    assert "running snapshot dropped" in lines[0]
    store.close()


def test_a_running_job_keeps_the_time_limit_its_node_had_from_slurm(tmp_path: Path, db_url: str) -> None:
    from slurm_plugin.query import job_summary_text
    from tests.test_record import SLURM

    store = open_store(db_url)
    record = _snapshot(tmp_path / "outbox", slurm={**SLURM, "state": None, "time_limit_s": 7200.0})
    snapshots.ingest_snapshots(store, tmp_path / "outbox", SETTINGS, lambda *_: None)
    summary = _summary(db_url, record["job_id"])
    assert summary["slurm"]["time_limit_s"] == 7200.0  # no sacct needed for the projection
    assert summary["slurm"]["state"] is None
    text = job_summary_text.render(summary).splitlines()
    assert any(line.startswith("  as of ") for line in text)
    assert any(line.startswith("  so far ") for line in text)
    assert not any(line.startswith("  end ") for line in text)
    store.close()
