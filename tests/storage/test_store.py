"""The accounting store on SQLite and PostgreSQL: migrations, exactly-once parts, intensity revisions,
footprint history."""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.storage import RecordRejected, Store, StoreError, StoreUnavailable, migrations
from tests.storage.conftest import FOOTPRINT, START, count, intervals, make_record

T0 = datetime.fromtimestamp(START, UTC)
HOUR = timedelta(hours=1)


def versions(store: Store) -> list[int]:
    return [row[0] for row in store.db.execute("SELECT version FROM schema_version ORDER BY version")]


def test_open_creates_every_table(store: Store) -> None:
    tables = ("schema_version", "jobs", "job_parts", "timeline", "intensity", "footprints", "running_parts")
    assert all(store.db.has_table(name) for name in tables)


def test_sqlite_is_opened_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'jobcarbon.db'}", 5.0)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    store.close()


def test_migrations_are_idempotent(db_url: str) -> None:
    for _ in range(3):
        opened = Store.open(db_url, 5.0)
        assert migrations.upgrade(opened.db) == migrations.latest()
        assert versions(opened) == [m.version for m in migrations.MIGRATIONS]
        opened.close()


def test_a_new_migration_applies_only_itself(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(db_url, 5.0).close()
    known = [m.version for m in migrations.MIGRATIONS]
    extra = migrations.Migration(known[-1] + 1, "an extra", ("CREATE TABLE extra (id INTEGER PRIMARY KEY)",))
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, extra])
    opened = Store.open(db_url, 5.0)
    assert versions(opened) == [*known, extra.version]
    assert opened.db.has_table("extra")
    assert migrations.upgrade(opened.db) == extra.version
    opened.close()


def test_version_1_timelines_are_packed_on_upgrade(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        old = Store.open(db_url, 5.0)
    old.db.execute(
        "INSERT INTO jobs (id, cluster, job_id, restart_count, user_name, uid, gid, start_s, end_s)"
        " VALUES (1, 'hpc', 1, 0, 'alice', 1000, 1000, ?, ?)",
        [START, START + 30],
    )
    for part_id, node in ((1, "node001"), (2, "node002")):
        old.db.execute(
            "INSERT INTO job_parts (id, job, node, start_s, end_s, elapsed_s, cpu_count, cpu_list, gpus_json,"
            " total_j, coverage_fraction, status, partial_reasons_json, notes_json, software_version,"
            " record_zlib, received_at_s) VALUES (?, 1, ?, ?, ?, 30, 4, '0-3', '[]', 0, 1, 'complete',"
            " '[]', '[]', '0.1.0', ?, 0)",
            [part_id, node, START, START + 30, b""],
        )
    rows = [(START + 10, START + 20, None, None, None), (START, START + 10, 1.5, 0.25, None)]
    old.db.executemany(
        "INSERT INTO timeline (part_id, t0_s, t1_s, cpu_j, dram_j, gpu_j) VALUES (1, ?, ?, ?, ?, ?)", rows
    )
    old.close()
    upgraded = Store.open(db_url, 5.0)
    assert versions(upgraded) == [m.version for m in migrations.MIGRATIONS]
    assert upgraded.timeline(1) == sorted(rows, key=lambda row: row[0])
    assert upgraded.timeline(2) == []  # a part without intervals
    assert intervals(upgraded) == 2
    assert not upgraded.db.has_table("timeline_rows")
    upgraded.close()


def test_a_database_from_a_newer_version_is_refused(store: Store, db_url: str) -> None:
    store.db.execute("INSERT INTO schema_version VALUES (99, 'future', 0)")
    with pytest.raises(StoreError, match="newer"):
        Store.open(db_url, 5.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/jobcarbon", "expected sqlite"),
        ("sqlite:///relative.db", "absolute path"),
        ("sqlite:///:memory:", "absolute path"),
        ("/var/lib/jobcarbon.db", "expected sqlite"),
        ("postgresql://jobcarbon:secret@db/jobcarbon", "password_file"),
    ],
)
def test_unsupported_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        Store.open(url, 1.0)


def test_a_missing_directory_is_unavailable_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        Store.open(f"sqlite:///{tmp_path}/absent/jobcarbon.db", 0.1)
    assert not (tmp_path / "absent").exists()


def test_a_part_is_stored_exactly_once(store: Store) -> None:
    document = make_record()
    part_id = store.add_part(document)
    assert isinstance(part_id, int)
    assert store.add_part(document) is None
    assert store.add_part(make_record(rows=2)) is None  # a rewritten record of the same run: still once
    assert (count(store, "jobs"), count(store, "job_parts"), intervals(store)) == (1, 1, 4)


def test_part_and_record_read_back(store: Store) -> None:
    document = make_record()
    part_id = store.add_part(document)
    part = store.part(part_id)
    assert (part["cluster"], part["job_id"], part["restart_count"], part["node"]) == (
        "hpc",
        4242,
        0,
        "node001",
    )
    assert (part["user"], part["account"], part["partition"]) == ("alice", "physics", "gpu")
    assert part["start"] == T0
    assert part["end"] == T0 + timedelta(seconds=40)
    assert part["cpu_j"] == document["energy"]["cpu"]["joules"]
    assert part["total_j"] == document["energy"]["total_joules"]
    assert store.record(part_id) == document
    with pytest.raises(KeyError):
        store.part(part_id + 1)


def test_timeline_rows_are_absolute_utc_seconds(store: Store) -> None:
    part_id = store.add_part(make_record(rows=3))
    assert store.timeline(part_id) == [
        (START, START + 10, 100.0, 10.0, 500.0),
        (START + 10, START + 20, 101.0, 10.0, 500.0),
        (START + 20, START + 30, 102.0, 10.0, 500.0),
    ]


def test_a_gap_in_the_timeline_stays_null(store: Store) -> None:
    document = make_record(rows=2)
    document["timeline"]["rows"][1][2:] = [None, None, None]
    part_id = store.add_part(document)
    assert store.timeline(part_id)[1] == (START + 10, START + 20, None, None, None)


def test_timeline_columns_hold_the_rows_with_nan_for_null(store: Store) -> None:
    document = make_record(rows=2)
    document["timeline"]["rows"][1][2:] = [None, 7.5, None]
    part_id = store.add_part(document)
    starts, ends, cpu, dram, gpu = store.timeline_columns(part_id)
    assert (list(starts), list(ends)) == ([START, START + 10], [START + 10, START + 20])
    assert (cpu[0], list(dram), gpu[0]) == (100.0, [10.0, 7.5], 500.0)
    assert math.isnan(cpu[1])
    assert math.isnan(gpu[1])
    assert [list(column) for column in store.timeline_columns(part_id + 1)] == [[]] * 5


def test_a_multi_node_job_is_one_job_spanning_its_parts(store: Store) -> None:
    for index, node in enumerate(["node001", "node002", "node003"]):
        store.add_part(make_record(node=node, start=START + index, rows=4 + index))
    assert (count(store, "jobs"), count(store, "job_parts")) == (1, 3)
    start_s, end_s = store.db.execute("SELECT start_s, end_s FROM jobs").fetchone()
    assert (start_s, end_s) == (START, START + 2 + 60)


@pytest.mark.parametrize(
    ("start", "rows", "span"),
    [
        (START - 5, 1, (START - 5, START + 40)),  # starts earlier: the start moves, the end stays
        (START + 5, 1, (START, START + 40)),  # inside the span: nothing moves
        (START + 35, 1, (START, START + 45)),  # ends later: the end moves
        (START - 5, 6, (START - 5, START + 55)),  # both
    ],
)
def test_a_later_part_widens_its_job_span_and_never_narrows_it(
    store: Store, start: float, rows: int, span: tuple[float, float]
) -> None:
    store.add_part(make_record(node="node001", start=START, rows=4))
    store.add_part(make_record(node="node002", start=start, rows=rows))
    assert store.db.execute("SELECT start_s, end_s FROM jobs").fetchone() == span


def test_a_requeued_run_is_its_own_job(store: Store) -> None:
    store.add_part(make_record(restart_count=0))
    store.add_part(make_record(restart_count=1, start=START + 3600))
    assert (count(store, "jobs"), count(store, "job_parts")) == (2, 2)


def test_parts_since_selects_by_end_time(store: Store) -> None:
    early = store.add_part(make_record(job_id=1))
    late = store.add_part(make_record(job_id=2, start=START + 3600))
    assert store.parts() == [early, late]
    assert store.parts(since=T0 + HOUR) == [late]
    assert store.parts(since=T0 + 3 * HOUR) == []


def test_a_refused_part_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(RecordRejected):
        store.add_part(make_record(status="running"))  # the CHECK constraint, past a skipped validation
    assert (count(store, "jobs"), count(store, "job_parts"), count(store, "timeline")) == (0, 0, 0)


def test_a_batch_is_stored_whole_in_key_order_or_not_at_all(store: Store) -> None:
    batch = [make_record(job_id=job_id) for job_id in (3, 1, 2)]
    assert store.add_parts([(document, None, None) for document in batch]) == [3, 1, 2]
    again = [make_record(job_id=4), batch[0], make_record(job_id=5, status="running")]
    with pytest.raises(RecordRejected):
        store.add_parts([(document, None, None) for document in again])
    assert (count(store, "jobs"), count(store, "job_parts")) == (3, 3)
    new, duplicate = store.add_parts([(document, None, None) for document in again[:2]])
    assert (new is not None, duplicate) == (True, None)
    assert count(store, "job_parts") == 4


def test_a_locked_sqlite_database_is_unavailable_and_rolls_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobcarbon.db'}"
    Store.open(url, 5.0).close()
    holder = sqlite3.connect(tmp_path / "jobcarbon.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    waiting = Store.open(url, 0.05)
    with pytest.raises(StoreUnavailable, match="locked"):
        waiting.add_part(make_record())
    holder.execute("ROLLBACK")
    holder.close()
    assert waiting.add_part(make_record()) is not None
    waiting.close()


def point(start: datetime, value: float, source: str = "electricitymaps", **flags: bool) -> IntensityPoint:
    return IntensityPoint("DE", start, start + HOUR, value, source, "lifecycle", **flags)


def test_an_actual_replaces_its_forecast(store: Store) -> None:
    fetched = T0 - HOUR
    assert (
        store.upsert_intensity([point(T0, 300.0, forecast=True), point(T0 + HOUR, 310.0, forecast=True)]) == 2
    )
    actual = IntensityPoint("DE", T0, T0 + HOUR, 280.0, "electricitymaps", "lifecycle", fetched_at=fetched)
    store.upsert_intensity([actual])
    assert store.intensity("DE", T0, T0 + 2 * HOUR) == [actual, point(T0 + HOUR, 310.0, forecast=True)]


def test_intensity_overlap_is_half_open_and_per_zone(store: Store) -> None:
    store.upsert_intensity([point(T0 + i * HOUR, 100.0 + i) for i in range(4)])
    store.upsert_intensity([IntensityPoint("FR", T0, T0 + HOUR, 50.0, "electricitymaps", "lifecycle")])
    found = store.intensity("DE", T0 + HOUR, T0 + 2 * HOUR + timedelta(minutes=1))
    assert [p.g_per_kwh for p in found] == [101.0, 102.0]
    assert all(p.start.tzinfo is not None for p in found)
    assert store.intensity("DE", T0 + 4 * HOUR, T0 + 5 * HOUR) == []


def test_points_of_several_sources_come_sorted(store: Store) -> None:
    store.upsert_intensity([point(T0 + HOUR, 1.0, "gb"), point(T0, 2.0, "gb"), point(T0, 3.0, "ember")])
    found = store.intensity("DE", T0, T0 + 2 * HOUR)
    assert [(p.start, p.source) for p in found] == [(T0, "ember"), (T0, "gb"), (T0 + HOUR, "gb")]


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.intensity("DE", datetime(2026, 1, 1), datetime(2026, 1, 2))


def test_a_recompute_keeps_the_previous_footprint(store: Store) -> None:
    part_id = store.add_part(make_record())
    assert store.footprint(part_id) is None
    assert store.save_footprint(part_id, {**FOOTPRINT, "sources": ["forecast"]}) == 1
    assert store.save_footprint(part_id, {**FOOTPRINT, "co2e_g": 0.28, "computed_from": T0}) == 2
    current = store.footprint(part_id)
    assert (current["version"], current["current"], current["co2e_g"]) == (2, True, 0.28)
    assert current["computed_from"] == "2026-01-01T00:00:00Z"
    assert current["computed_at"].tzinfo is not None
    history = store.footprint_history(part_id)
    assert [(f["version"], f["current"]) for f in history] == [(1, False), (2, True)]
    assert history[0] == {
        **FOOTPRINT,
        "sources": ["forecast"],
        "footprint_id": history[0]["footprint_id"],
        "part_id": part_id,
        "version": 1,
        "current": False,
        "computed_at": history[0]["computed_at"],
    }
    assert store.db.execute("SELECT co2e_g FROM footprints WHERE is_current = 1").fetchall() == [(0.28,)]


def test_a_footprint_needs_its_headline_and_its_part(store: Store) -> None:
    part_id = store.add_part(make_record())
    with pytest.raises(ValueError, match="co2e_g"):
        store.save_footprint(part_id, {k: v for k, v in FOOTPRINT.items() if k != "co2e_g"})
    with pytest.raises(ValueError, match="version"):
        store.save_footprint(part_id, {**FOOTPRINT, "version": 3})
    with pytest.raises(RecordRejected):
        store.save_footprint(part_id + 1, FOOTPRINT)
    assert store.footprint_history(part_id) == []


def test_slurms_facts_about_a_job_are_columns_of_its_row(store: Store) -> None:
    from tests.test_record import SLURM

    facts = {**SLURM, "array_job_id": 40, "array_task_id": 2, "req_mem_mb": 512.0}
    store.add_part(make_record(job_id=42, slurm=facts))
    store.add_part(make_record(job_id=43))  # a record of an earlier release: no `slurm` block
    rows = store.db.execute(
        "SELECT job_id, job_name, slurm_state, exit_code, exit_signal, time_limit_s, array_job_id,"
        " array_task_id, req_mem_mb, submit_s FROM jobs ORDER BY job_id"
    ).fetchall()
    assert [tuple(row) for row in rows] == [
        (42, "train \u00e9", "TIMEOUT", 0, 15, 60.0, 40, 2, 512.0, 1767225600.0),
        (43, None, None, None, None, None, None, None, None, None),
    ]


def test_parts_stored_before_version_9_get_their_content_digest(store: Store) -> None:
    from slurm_plugin import record as record_contract

    documents = [make_record(job_id=1), make_record(job_id=2)]
    for document in documents:
        store.add_part(document)
    assert store.stored_digest(documents[0]) == record_contract.digest(documents[0])
    store.db.execute("UPDATE job_parts SET content_sha256 = NULL")  # as version 8 stored them
    store.db.execute("UPDATE job_parts SET record_zlib = ? WHERE id = 2", [b"not zlib"])
    migrations._digest_parts(store.db)  # version 9's backfill
    assert store.stored_digest(documents[0]) == record_contract.digest(documents[0])
    assert store.stored_digest(documents[1]) is None  # unreadable: compared as a duplicate
    assert store.stored_digest(make_record(job_id=3)) is None  # no such part


def test_a_part_keeps_its_waste_and_gpu_utilisation_and_an_old_record_none(store: Store) -> None:
    from tests.jobdb import Job, gpu

    busy = gpu(1)
    document = Job(
        72, cpu_used=0.25, gpus=[busy], gpu_w={busy["uuid"]: (300.0, "measured")}, gpu_util={busy["uuid"]: 90}
    ).record()
    store.add_part(document)
    store.add_part(Job(73).record())  # no cgroup reading: no efficiency, no waste figure
    rows = store.db.execute(
        "SELECT j.job_id, p.idle_gpu_j, p.waste_j, p.gpu_util_pct "
        "FROM job_parts p JOIN jobs j ON j.id = p.job ORDER BY j.job_id"
    ).fetchall()
    assert [tuple(r) for r in rows] == [
        (72, 0.0, pytest.approx(document["efficiency"]["idle_cpu_j"]), 90.0),
        (73, None, None, None),
    ]
