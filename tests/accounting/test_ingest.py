"""Ingest from the outbox: exactly once, quarantine with a reason, kept while the database is away."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from slurm_plugin import outbox as outbox_files
from slurm_plugin.accounting import ingest, join
from slurm_plugin.accounting.delivery import deliver_outbox
from slurm_plugin.accounting.ingest import IngestResult, ingest_outbox
from slurm_plugin.config import Accounting, Config, Database, Paths
from slurm_plugin.storage import Store, StoreUnavailable
from slurm_plugin.storage import store as store_module
from slurm_plugin.storage.store import NewPart
from tests.storage.conftest import count, intervals, make_record

INGESTERS = 6
SETTINGS = Accounting(zone="DE", pue=1.5)  # no series stored: the zone's yearly average
DE_YEARLY = 342.0  # g/kWh, Electricity Maps 2025, zone DE (slurm_plugin/data)
KWH = 3.6e6
RECORD_J = 2446.0  # make_record(): cpu 406 J, dram 40 J, gpu 2000 J


class Lines(list):
    """A log that remembers its lines."""

    def __call__(self, level: str, message: str) -> None:
        self.append(f"{level}: {message}")


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def quarantine(tmp_path: Path) -> Path:
    return tmp_path / "quarantine"


@pytest.fixture
def store(db_url: str) -> Any:
    """A fresh store, on SQLite and on PostgreSQL in turn."""
    opened = Store.open(db_url, 5.0)
    yield opened
    opened.close()


def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database of the test's own, for what only SQLite has: a file, its lock, its directory."""
    return f"sqlite:///{tmp_path / 'jobcarbon.db'}"


def accountant(store: Store) -> ingest.Account:
    """What ingest and delivery pass: a new part's footprint from the store's intensity, here none."""
    return join.accountant(store, SETTINGS)


def write(outbox: Path, document: dict[str, Any]) -> Path:
    return outbox_files.write(outbox, document, fsync=False)


def write_raw(outbox: Path, name: str, data: bytes) -> Path:
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / name).write_bytes(data)
    return outbox / name


def config_for(tmp_path: Path, url: str) -> Config:
    paths = Paths(outbox=tmp_path / "outbox", quarantine=tmp_path / "quarantine")
    return Config(paths=paths, database=Database(url=url, busy_timeout_s=5.0), accounting=SETTINGS)


def test_records_are_stored_with_their_footprints_then_removed(
    store: Store, outbox: Path, quarantine: Path
) -> None:
    for node in ("node001", "node002"):
        write(outbox, make_record(node=node))
    accounted: list[str] = []

    def account(new: NewPart) -> dict[str, Any]:
        accounted.append(new.record["node"])
        return accountant(store)(new)

    assert ingest_outbox(store, outbox, quarantine, account) == IngestResult(stored=2)
    assert sorted(accounted) == ["node001", "node002"]
    assert list(outbox.iterdir()) == []
    parts = store.parts()
    assert sorted(store.part(p)["node"] for p in parts) == ["node001", "node002"]
    for part_id in parts:
        (found,) = store.footprint_history(part_id)
        assert (found["version"], found["current"], found["rung"], found["zone"]) == (
            1,
            True,
            "zone_yearly",
            "DE",
        )
        assert found["it_energy_j"] == pytest.approx(RECORD_J)
        assert found["facility_energy_j"] == pytest.approx(1.5 * RECORD_J)
        assert found["co2e_g"] == pytest.approx(1.5 * RECORD_J / KWH * DE_YEARLY, rel=1e-9)


def test_without_an_account_records_are_stored_without_footprints(
    store: Store, outbox: Path, quarantine: Path
) -> None:
    write(outbox, make_record())
    assert ingest_outbox(store, outbox, quarantine) == IngestResult(stored=1)
    (part_id,) = store.parts()
    assert store.footprint(part_id) is None
    assert count(store, "footprints") == 0


def test_redelivery_is_a_duplicate(store: Store, outbox: Path, quarantine: Path) -> None:
    document = make_record()
    write(outbox, document)
    assert ingest_outbox(store, outbox, quarantine, accountant(store)) == IngestResult(stored=1)
    copy = write(outbox, document).read_bytes()
    write_raw(outbox, "copied-by-hand.json", copy)
    assert ingest_outbox(store, outbox, quarantine, accountant(store)) == IngestResult(duplicates=2)
    assert list(outbox.iterdir()) == []
    assert count(store, "job_parts") == 1
    (part_id,) = store.parts()
    assert [f["version"] for f in store.footprint_history(part_id)] == [1]  # no second footprint


def test_a_backlog_is_stored_a_batch_per_transaction(
    store: Store, outbox: Path, quarantine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for job_id in range(ingest.BATCH + 8):
        write(outbox, make_record(job_id=job_id))
    batches = []
    write_parts = store.write_parts
    monkeypatch.setattr(store, "write_parts", lambda ready: batches.append(ready.count) or write_parts(ready))
    assert ingest_outbox(store, outbox, quarantine, accountant(store)) == IngestResult(
        stored=ingest.BATCH + 8
    )
    assert batches == [ingest.BATCH, 8]  # `Store.write_parts`: one transaction each
    assert (count(store, "job_parts"), count(store, "footprints")) == (ingest.BATCH + 8, ingest.BATCH + 8)
    assert list(outbox.iterdir()) == []


def test_a_record_the_database_refuses_is_quarantined_and_the_rest_of_its_batch_stored(
    store: Store, outbox: Path, quarantine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for node in ("node001", "node002", "node003"):
        write(outbox, make_record(node=node))
    part_params = store_module.part_params

    def refused_on_node002(record: dict, raw: bytes) -> dict:
        """A value validation lets through but the database's CHECK constraint refuses."""
        params = part_params(record, raw)
        return params | {"coverage_fraction": 2.0} if record["node"] == "node002" else params

    monkeypatch.setattr(store_module, "part_params", refused_on_node002)
    log = Lines()
    assert ingest_outbox(store, outbox, quarantine, accountant(store), log) == IngestResult(
        stored=2, quarantined=1
    )
    assert sorted(p.name for p in quarantine.iterdir() if p.suffix == ".json") == ["hpc_4242_0_node002.json"]
    assert list(outbox.iterdir()) == []
    assert (count(store, "job_parts"), count(store, "footprints")) == (2, 2)


def test_temporaries_are_left_alone(store: Store, outbox: Path, quarantine: Path) -> None:
    temporary = write_raw(outbox, ".hpc_1_0_node001.json.4711.tmp", b'{"half": ')
    hidden = write_raw(outbox, ".hidden.json", b"{")
    assert ingest_outbox(store, outbox, quarantine) == IngestResult()
    assert temporary.exists()
    assert hidden.exists()


def test_a_missing_outbox_is_empty(store: Store, tmp_path: Path, quarantine: Path) -> None:
    assert ingest_outbox(store, tmp_path / "absent", quarantine) == IngestResult()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"schema": "jobcarbon/job-node-record/1", ', "not JSON"),
        (json.dumps({**make_record(), "job_id": "4242"}).encode(), "job_id: must be an integer >= 0"),
    ],
)
def test_a_malformed_record_is_quarantined_with_its_reason(
    store: Store, outbox: Path, quarantine: Path, data: bytes, reason: str
) -> None:
    write(outbox, make_record(node="node001"))
    write_raw(outbox, "hpc_1_0_bad.json", data)
    write(outbox, make_record(node="node003"))
    log = Lines()
    assert ingest_outbox(store, outbox, quarantine, log=log) == IngestResult(stored=2, quarantined=1)
    assert (quarantine / "hpc_1_0_bad.json").read_bytes() == data
    written = (quarantine / "hpc_1_0_bad.json.reason").read_text()
    assert written.startswith(f"hpc_1_0_bad.json: {reason}")
    assert written.count("\n") == 1
    assert any(reason in line for line in log)
    assert list(outbox.iterdir()) == []


def test_quarantine_keeps_an_earlier_file_of_the_same_name(
    store: Store, outbox: Path, quarantine: Path
) -> None:
    write_raw(outbox, "hpc_1_0_bad.json", b"first")
    ingest_outbox(store, outbox, quarantine)
    write_raw(outbox, "hpc_1_0_bad.json", b"second")
    ingest_outbox(store, outbox, quarantine)
    kept = sorted(p.read_bytes() for p in quarantine.glob("*.json"))
    assert kept == [b"first", b"second"]
    assert len(list(quarantine.glob("*.reason"))) == 2


def test_quarantine_on_another_filesystem_copies(
    store: Store, outbox: Path, quarantine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(source: Any, target: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    write_raw(outbox, "hpc_1_0_bad.json", b"{")
    monkeypatch.setattr(ingest.os, "rename", cross_device)
    assert ingest_outbox(store, outbox, quarantine).quarantined == 1
    assert (quarantine / "hpc_1_0_bad.json").read_bytes() == b"{"
    assert not (outbox / "hpc_1_0_bad.json").exists()


def test_a_failing_footprint_stores_the_part_without_one(
    store: Store, outbox: Path, quarantine: Path
) -> None:
    def broken(new: NewPart) -> dict[str, Any]:
        raise RuntimeError("no intensity yet")

    write(outbox, make_record())
    log = Lines()
    assert ingest_outbox(store, outbox, quarantine, broken, log) == IngestResult(stored=1)
    assert len(log) == 1
    assert "no intensity yet" in log[0]
    assert list(outbox.iterdir()) == []
    (part_id,) = store.parts()
    assert store.footprint(part_id) is None  # the recompute's to find
    assert count(store, "footprints") == 0


def test_a_database_lost_while_accounting_keeps_the_records(
    store: Store, outbox: Path, quarantine: Path
) -> None:
    def unavailable(new: NewPart) -> dict[str, Any]:
        raise StoreUnavailable("connection lost")

    for node in ("node001", "node002"):
        write(outbox, make_record(node=node))
    log = Lines()
    assert ingest_outbox(store, outbox, quarantine, unavailable, log) == IngestResult(kept=2)
    assert len(log) == 1
    assert "connection lost" in log[0]
    assert len(list(outbox.iterdir())) == 2
    assert count(store, "job_parts") == 0
    assert ingest_outbox(store, outbox, quarantine, accountant(store)) == IngestResult(stored=2)
    assert count(store, "footprints") == 2


def test_a_locked_database_keeps_records_for_a_later_ingest(
    tmp_path: Path, outbox: Path, quarantine: Path
) -> None:
    Store.open(sqlite_url(tmp_path), 5.0).close()
    for node in ("node001", "node002", "node003"):
        write(outbox, make_record(node=node))
    holder = sqlite3.connect(tmp_path / "jobcarbon.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    waiting = Store.open(sqlite_url(tmp_path), 0.05)
    log = Lines()
    assert ingest_outbox(waiting, outbox, quarantine, log=log) == IngestResult(kept=3)
    assert len(log) == 1
    assert "locked" in log[0]
    assert len(list(outbox.iterdir())) == 3
    holder.execute("ROLLBACK")
    holder.close()
    assert ingest_outbox(waiting, outbox, quarantine) == IngestResult(stored=3)
    waiting.close()


def test_delivery_keeps_the_record_while_the_database_is_unreachable(tmp_path: Path, outbox: Path) -> None:
    path = write(outbox, make_record())
    log = Lines()
    unreachable = config_for(tmp_path, f"sqlite:///{tmp_path}/not-mounted/jobcarbon.db")
    assert deliver_outbox(unreachable, log) == 0
    assert path.exists()
    assert len(log) == 1
    assert "stay in" in log[0]
    Store.open(sqlite_url(tmp_path), 5.0).close()
    assert deliver_outbox(config_for(tmp_path, sqlite_url(tmp_path)), log) == 1
    assert not path.exists()


def test_delivery_stores_records_with_their_footprints(tmp_path: Path, outbox: Path, db_url: str) -> None:
    for node in ("node001", "node002"):
        write(outbox, make_record(node=node))
    Store.open(db_url, 5.0).close()
    assert deliver_outbox(config_for(tmp_path, db_url), Lines()) == 2
    assert list(outbox.iterdir()) == []
    check = Store.open(db_url, 5.0)
    try:
        footprints = [check.footprint(part_id) for part_id in check.parts()]
    finally:
        check.close()
    assert len(footprints) == 2
    for found in footprints:
        assert found is not None
        assert found["co2e_g"] == pytest.approx(1.5 * RECORD_J / KWH * DE_YEARLY, rel=1e-9)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://db/jobcarbon", "expected sqlite:///"),
        ("postgresql://alice:secret@db/jobcarbon", "a password in the URL"),
    ],
)
def test_delivery_refuses_a_bad_url_without_raising(
    tmp_path: Path, outbox: Path, url: str, reason: str
) -> None:
    path = write(outbox, make_record())
    log = Lines()
    assert deliver_outbox(config_for(tmp_path, url), log) == 0
    assert path.exists()
    assert len(log) == 1
    assert "stay in" in log[0]
    assert reason in log[0]
    assert "secret" not in log[0]


def test_delivery_quarantines_a_malformed_record(tmp_path: Path, outbox: Path, db_url: str) -> None:
    write_raw(outbox, "hpc_1_0_node001.json", b"{}")
    Store.open(db_url, 5.0).close()
    assert deliver_outbox(config_for(tmp_path, db_url), Lines()) == 0
    assert (tmp_path / "quarantine" / "hpc_1_0_node001.json.reason").exists()
    assert list(outbox.iterdir()) == []


def _ingest_worker(start: Any, results: Any, url: str, outbox: str, quarantine: str) -> None:
    """One ingester process: open the store, wait for the others, ingest the shared outbox."""
    store = Store.open(url, 30.0)
    start.wait(timeout=60)
    try:
        result = ingest_outbox(store, Path(outbox), Path(quarantine), accountant(store))
    finally:
        store.close()
    results.put((result.stored, result.duplicates, result.quarantined, result.kept))


def test_concurrent_ingesters_store_every_part_exactly_once(
    db_url: str, outbox: Path, quarantine: Path
) -> None:
    # 50 jobs on 3 nodes each and 50 single-node jobs: 200 records, 100 jobs
    for job_id in range(1, 51):
        for node in ("node001", "node002", "node003"):
            write(outbox, make_record(job_id=job_id, node=node, rows=30))
    for job_id in range(51, 101):
        write(outbox, make_record(job_id=job_id, rows=30))
    context = multiprocessing.get_context("spawn")
    start, queue = context.Barrier(INGESTERS), context.Queue()
    arguments = (start, queue, db_url, str(outbox), str(quarantine))
    workers = [context.Process(target=_ingest_worker, args=arguments) for _ in range(INGESTERS)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    stored, _, quarantined, kept = map(sum, zip(*results, strict=True))
    assert (stored, quarantined, kept) == (200, 0, 0)
    assert list(outbox.iterdir()) == []
    check = Store.open(db_url, 5.0)
    assert (count(check, "jobs"), count(check, "job_parts"), intervals(check)) == (100, 200, 6000)
    assert count(check, "footprints") == 200  # each saved with its part, so exactly once too
    per_job = check.db.execute(
        "SELECT job_id, COUNT(*) FROM jobs j JOIN job_parts p ON p.job = j.id GROUP BY job_id"
    )
    assert dict(per_job) == {j: 3 if j <= 50 else 1 for j in range(1, 101)}
    check.close()


def test_a_vanished_file_is_not_an_error(store: Store, outbox: Path, quarantine: Path) -> None:
    path = write(outbox, make_record())
    os.unlink(path)
    assert ingest.ingest_file(store, path, quarantine) is ingest.Outcome.GONE


def test_a_redelivery_laid_out_differently_is_still_a_silent_duplicate(
    store: Store, outbox: Path, quarantine: Path
) -> None:
    document = make_record()
    write(outbox, document)
    ingest_outbox(store, outbox, quarantine)
    log = Lines()
    write_raw(outbox, outbox_files.filename(document), json.dumps(document, sort_keys=True).encode())
    assert ingest_outbox(store, outbox, quarantine, log=log) == IngestResult(duplicates=1)
    assert (log, list(outbox.iterdir())) == ([], [])
    assert not quarantine.exists()


def test_a_conflicting_record_is_quarantined_with_the_stored_version(
    store: Store, outbox: Path, quarantine: Path
) -> None:
    original = make_record()
    stored_bytes = write(outbox, original).read_bytes()
    ingest_outbox(store, outbox, quarantine, accountant(store))
    changed = make_record()
    changed["energy"]["cpu"]["joules"] += 1.0
    changed["energy"]["total_joules"] += 1.0
    incoming = write(outbox, changed).read_bytes()
    log = Lines()
    assert ingest_outbox(store, outbox, quarantine, accountant(store), log) == IngestResult(conflicts=1)
    name = outbox_files.filename(changed)
    assert list(outbox.glob("*.json")) == []
    assert (quarantine / name).read_bytes() == incoming
    reason = (quarantine / f"{name}.reason").read_text()
    assert reason.startswith(
        f"{name}: conflicts with the stored part (cluster hpc, job_id 4242, restart_count 0,"
    )
    assert reason.count("\n") == 1
    stored_copy = quarantine / f"{name}.stored.json"
    if store.db.name == "sqlite":
        assert stored_copy.read_bytes() == stored_bytes
    else:  # nodes deliver as the writer role, which reads no part
        assert not stored_copy.exists()
        assert "the stored version is in the database only" in reason
    assert len(log) == 1
    assert log[0].startswith(f"warning: quarantined as {quarantine / name}: ")
    (part_id,) = store.parts()
    assert store.part(part_id)["cpu_j"] == original["energy"]["cpu"]["joules"]  # the stored part stands
