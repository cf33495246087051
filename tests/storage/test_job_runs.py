"""Slurm reuses job ids (issue 13, bug 2): each run of an id is its own job, on SQLite and PostgreSQL, and
migration 11 keys a version-10 database so without merging or losing a row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slurm_plugin import outbox as outbox_files
from slurm_plugin.accounting.ingest import IngestResult, ingest_outbox
from slurm_plugin.storage import Store, migrations, schema
from tests.storage.conftest import START, count, make_record

BOB = {"user": "bob", "uid": 1001, "gid": 1001, "account": "chemistry"}


def jobs(store: Store) -> list[tuple[Any, ...]]:
    rows = store.db.execute(
        "SELECT j.job_id, j.run, j.user_name, j.start_s, j.end_s, COUNT(p.id), SUM(p.total_j)"
        " FROM jobs j JOIN job_parts p ON p.job = j.id GROUP BY j.id, j.job_id, j.run, j.user_name,"
        " j.start_s, j.end_s ORDER BY j.id"
    ).fetchall()
    return [tuple(row) for row in rows]


def test_runs_slurm_names_are_jobs_of_their_own(store: Store) -> None:
    first = make_record(run="start:1767225590")
    again = make_record(run="start:1767311990", start=START + 86400)
    assert store.add_part(first) is not None
    assert store.add_part(again) is not None
    assert store.add_part(first) is None  # a true redelivery is still stored once
    total = first["energy"]["total_joules"]
    assert jobs(store) == [
        (4242, "start:1767225590", "alice", START, START + 40, 1, total),
        (4242, "start:1767311990", "alice", START + 86400, START + 86440, 1, total),
    ]


def test_another_users_job_with_the_same_id_is_never_merged(store: Store) -> None:
    """The issue's case on Slurm 22.05 (`seen:` runs, overlapping spans) and on a legacy record."""
    alice = make_record(node="node001", run="seen:1767225600")
    bob = make_record(node="node002", run="seen:1767225601", **BOB)
    legacy_bob = make_record(node="node003", **BOB)  # no run, as from a release before runs: legacy ''
    for document in (alice, bob, legacy_bob):
        assert store.add_part(document) is not None
    assert [(job[1], job[2], job[5]) for job in jobs(store)] == [
        ("seen:1767225600", "alice", 1),
        ("seen:1767225601", "bob", 1),
        ("", "bob", 1),
    ]


def test_seen_parts_join_the_overlapping_job_that_lacks_their_node(store: Store) -> None:
    """Slurm 22.05 gives no run every node shares: each node's prolog clock differs by a second or so."""
    node1 = make_record(node="node001", run="seen:1767225600")
    node2 = make_record(node="node002", run="seen:1767225601", rows=5)
    later = make_record(node="node001", run="seen:1767229200", start=START + 3600)
    same_node = make_record(node="node001", run="seen:1767225602")  # overlaps, but node001 is taken
    for document in (node1, node2, later, same_node):
        assert store.add_part(document) is not None
    assert store.add_part(node2) is None
    joules = node1["energy"]["total_joules"]
    assert jobs(store) == [
        (4242, "seen:1767225600", "alice", START, START + 50, 2, joules + node2["energy"]["total_joules"]),
        (4242, "seen:1767229200", "alice", START + 3600, START + 3640, 1, joules),
        (4242, "seen:1767225602", "alice", START, START + 40, 1, joules),
    ]


def test_ingest_keeps_every_job_given_one_id(store: Store, tmp_path: Path) -> None:
    """The issue's three jobs 4242: none stored under another's row, none dropped as a duplicate."""
    outbox, quarantine = tmp_path / "outbox", tmp_path / "quarantine"
    documents = [
        make_record(node="node001", run="start:1767225590"),
        make_record(node="node002", run="start:1767225595", **BOB),
        make_record(node="node001", run="start:1767232800", start=START + 7200, **BOB),
    ]
    for document in documents:
        outbox_files.write(outbox, document, fsync=False)
    assert len(outbox_files.pending(outbox)) == 3  # one file each: the run is in the name
    assert ingest_outbox(store, outbox, quarantine) == IngestResult(stored=3)
    assert [(job[1], job[2]) for job in jobs(store)] == [
        ("start:1767225590", "alice"),
        ("start:1767225595", "bob"),
        ("start:1767232800", "bob"),
    ]
    conflicting = {**documents[0], "notes": ["changed"]}  # same run, node and user: a conflict
    outbox_files.write(outbox, conflicting, fsync=False)
    assert ingest_outbox(store, outbox, quarantine) == IngestResult(conflicts=1)


def test_a_running_snapshot_of_a_reused_id_is_kept_beside_the_old_jobs_record(store: Store) -> None:
    assert store.add_part(make_record(run="start:1767225590")) is not None
    snapshot = make_record(run="start:1767311990", status="running", **BOB)
    assert store.upsert_running(snapshot, b"{}", None) is True
    assert count(store, "running_parts") == 1
    assert store.add_part(make_record(run="start:1767225590", node="node002")) is not None
    assert count(store, "running_parts") == 1  # another run's record does not delete it


def _version_10(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A database as version 10 left it, with a two-node job and a one-node job of another user."""
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", [m for m in migrations.MIGRATIONS if m.version <= 10])
        old = Store.open(db_url, 5.0)
    for job, job_id, user, uid in ((7, 4242, "alice", 1000), (9, 4243, "bob", 1001)):
        old.db.execute(
            "INSERT INTO jobs (id, cluster, job_id, restart_count, user_name, uid, gid, start_s, end_s,"
            " job_name, slurm_state, exit_code, req_mem_mb, submit_s) VALUES (?, 'hpc', ?, 0, ?, ?, ?, ?, ?,"
            " 'train', 'COMPLETED', 0, 2048.5, ?)",
            [job, job_id, user, uid, uid, START, START + 30, START - 5],
        )
    for part_id, job, node in ((11, 7, "node001"), (12, 7, "node002"), (13, 9, "node001")):
        old.db.execute(
            "INSERT INTO job_parts (id, job, node, start_s, end_s, elapsed_s, cpu_count, cpu_list, gpus_json,"
            " total_j, coverage_fraction, status, partial_reasons_json, notes_json, software_version,"
            " record_zlib, received_at_s, content_sha256) VALUES (?, ?, ?, ?, ?, 30, 4, '0-3', '[]', ?, 1,"
            " 'complete', '[]', '[]', '0.1.0', ?, 0, 'aa')",
            [part_id, job, node, START, START + 30, 100.0 * part_id, b""],
        )
    old.db.execute(
        "INSERT INTO footprints (part_id, version, is_current, computed_at_s, fields_json)"
        " VALUES (12, 1, 1, 0, '{}')"
    )
    old.close()
    return Store.open(db_url, 5.0)


def test_migration_11_keeps_every_row_column_and_id(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    upgraded = _version_10(db_url, monkeypatch)
    try:
        assert migrations.current_version(upgraded.db) == migrations.latest()  # 11, and those after it
        facts = ", ".join(name for name, _ in schema.JOB_FACTS)
        rows = upgraded.db.execute(
            f"SELECT id, job_id, run, user_name, {facts} FROM jobs ORDER BY id"  # noqa: S608 - schema constants
        ).fetchall()
        assert [tuple(row[:4]) for row in rows] == [(7, 4242, "", "alice"), (9, 4243, "", "bob")]
        named = dict(zip([name for name, _ in schema.JOB_FACTS], rows[0][4:], strict=True))
        assert (named["job_name"], named["slurm_state"], named["req_mem_mb"]) == (
            "train",
            "COMPLETED",
            2048.5,
        )
        assert named["submit_s"] == START - 5
        parts = upgraded.db.execute(
            "SELECT id, job, node, run, total_j FROM job_parts ORDER BY id"
        ).fetchall()
        assert [tuple(p) for p in parts] == [
            (11, 7, "node001", "", 1100.0),
            (12, 7, "node002", "", 1200.0),
            (13, 9, "node001", "", 1300.0),
        ]
        assert count(upgraded, "footprints") == 1
        if upgraded.db.name == "sqlite":
            indexes = {
                row[0]
                for row in upgraded.db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'jobs'")
            }
            assert {"jobs_job_id", "jobs_uid_end", "jobs_array", "jobs_state_end"} <= indexes
            assert upgraded.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # on again after the change
        # A legacy record redelivered is a duplicate of its stored part; the same id by another user is not.
        assert upgraded.add_part(make_record(node="node001")) is None  # make_record gives no run
        assert upgraded.add_part(make_record(node="node001", run="seen:1767225600", **BOB)) is not None
        assert count(upgraded, "jobs") == 3
    finally:
        upgraded.close()
