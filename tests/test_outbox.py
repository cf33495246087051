"""The outbox: records written atomically under their run's name, and read back by ingest and `records`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slurm_plugin import outbox
from tests.storage.conftest import make_record


@pytest.mark.usefixtures("slurmd_umask")
def test_write_is_atomic_and_named_after_the_run(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    document = make_record()
    path = outbox.write(box, document, fsync=False)
    assert path == box / "hpc_4242_0_node001.json"
    assert json.loads(path.read_text()) == document
    assert path.stat().st_mode & 0o777 == 0o640
    assert box.stat().st_mode & 0o777 == 0o755
    rewritten = outbox.write(box, {**document, "status": "partial"}, fsync=True)
    assert rewritten == path
    assert json.loads(path.read_text())["status"] == "partial"
    assert sorted(p.name for p in box.iterdir()) == ["hpc_4242_0_node001.json"]


def test_a_snapshot_waits_apart_until_its_finished_record_replaces_it(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    snapshot = outbox.write(box, make_record(status="running"), fsync=False)
    assert snapshot == box / outbox.RUNNING_DIR / outbox.filename(make_record())
    assert (outbox.pending(box), outbox.waiting(box)) == ([], [snapshot])
    finished = outbox.write(box, make_record(), fsync=False)
    assert (outbox.pending(box), outbox.waiting(box)) == ([finished], [])


def test_pending_skips_temporaries_and_a_missing_outbox_is_empty(tmp_path: Path) -> None:
    assert outbox.pending(tmp_path / "absent") == []
    assert outbox.waiting(tmp_path / "absent") == []
    (tmp_path / ".hpc_1_0_node001.json.4711.tmp").write_text("{")
    (tmp_path / ".hidden.json").write_text("{")
    assert outbox.pending(tmp_path) == []


def test_find_returns_one_job_oldest_first_and_skips_unreadable_files(tmp_path: Path) -> None:
    outbox.write(tmp_path, make_record(node="node002"), fsync=False)
    outbox.write(tmp_path, make_record(node="node001"), fsync=False)
    outbox.write(tmp_path, make_record(job_id=7), fsync=False)
    (tmp_path / "hpc_4242_0_broken.json").write_text("{")
    assert [r["node"] for r in outbox.find(tmp_path, 4242)] == ["node001", "node002"]
    assert len(outbox.find(tmp_path)) == 3
