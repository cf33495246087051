"""PostgreSQL only: roles and grants, passwords, 64 nodes delivering through a server restart, migration."""

from __future__ import annotations

import multiprocessing
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from slurm_plugin import outbox as outbox_files
from slurm_plugin import record
from slurm_plugin.accounting import join
from slurm_plugin.accounting.delivery import deliver_outbox
from slurm_plugin.cli import main
from slurm_plugin.config import Accounting, Config, Database, Paths
from slurm_plugin.storage import (
    Store,
    StoreError,
    StoreUnavailable,
    migrations,
    node_intervals,
    readonly,
    roles,
    schema,
    writer_functions,
)
from testbed import postgres
from tests.accounting.test_node_ingest import document as node_document
from tests.accounting.test_node_ingest import interval
from tests.storage.conftest import FOOTPRINT, START, count, make_record

SETTINGS = Accounting(zone="DE", pue=1.2)
NODES = 64
RECORDS_PER_NODE = 10


def add(store: Store, document: dict[str, Any]) -> int | None:
    return store.add_part(document, account=join.accountant(store, SETTINGS))


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    opened = Store.open(postgres_url, 5.0)
    yield opened
    opened.close()


def test_the_writer_role_delivers_but_reads_and_alters_nothing(store: Store, make_role: Callable) -> None:
    stored = add(store, make_record(job_id=1, node="node009"))
    role = make_role("writer")
    roles.grant(store.db, writer=role.name, reader=None)
    writer = Store.open(role.url, 5.0, create=False, password_file=role.password_file)
    try:
        document = make_record(job_id=2)
        assert add(writer, document) is not None  # reads intensity, writes through the function
        assert add(writer, document) is None  # exactly once, told without reading any row
        assert writer.upsert_running(make_record(job_id=3), b"{}", None) is True
        for statement in (
            "SELECT * FROM jobs",
            "SELECT user_name FROM jobs",
            "SELECT record_zlib FROM job_parts",
            "SELECT * FROM footprints",
            "SELECT * FROM running_parts",
            "UPDATE footprints SET co2e_g = 0",
            "DELETE FROM footprint_months",
            "INSERT INTO timeline (part_id, intervals, columns_f64) VALUES (999, 0, ?)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.db.execute(statement, [b""] if "?" in statement else [])
        with pytest.raises(StoreUnavailable, match="permission denied"):
            writer.save_footprint(stored, FOOTPRINT)  # a new version of another job's footprint
        with pytest.raises(StoreUnavailable, match="permission denied"):
            writer.part(stored)
    finally:
        writer.close()
    assert (count(store, "job_parts"), count(store, "footprints"), count(store, "running_parts")) == (2, 2, 1)
    assert store.footprint(stored)["version"] == 1


def test_the_writer_role_tells_a_conflicting_record_from_a_redelivery(
    store: Store, make_role: Callable, tmp_path: Path
) -> None:
    from slurm_plugin.accounting.ingest import IngestResult, ingest_outbox

    role = make_role("writer")
    roles.grant(store.db, writer=role.name, reader=None)
    writer = Store.open(role.url, 5.0, create=False, password_file=role.password_file)
    outbox, quarantine = tmp_path / "outbox", tmp_path / "quarantine"
    document = make_record(job_id=5)
    try:
        outbox_files.write(outbox, document, fsync=False)
        assert ingest_outbox(writer, outbox, quarantine) == IngestResult(stored=1)
        outbox_files.write(outbox, document, fsync=False)
        assert ingest_outbox(writer, outbox, quarantine) == IngestResult(duplicates=1)
        outbox_files.write(
            outbox, {**document, "partial_reasons": ["changed"], "status": "partial"}, fsync=False
        )
        assert ingest_outbox(writer, outbox, quarantine) == IngestResult(conflicts=1)
    finally:
        writer.close()
    name = outbox_files.filename(document)
    assert sorted(p.name for p in quarantine.iterdir()) == [name, f"{name}.reason"]


def test_a_writer_granted_before_an_upgrade_may_run_the_functions_it_adds(
    store: Store, make_role: Callable
) -> None:
    role = make_role("writer")
    roles.grant(store.db, writer=role.name, reader=None)
    store.db.ddl(f"DROP FUNCTION {writer_functions.SIGNATURES[-1]}")  # as before the upgrade
    writer_functions.create(store.db)  # what an upgrade that adds a function runs
    store.db.commit()
    writer = Store.open(role.url, 5.0, create=False, password_file=role.password_file)
    try:
        document = make_record(job_id=6)
        assert add(writer, document) is not None
        assert writer.stored_digest(document) == record.digest(document)
    finally:
        writer.close()


def test_the_reader_role_reads_for_queries_and_writes_nothing(store: Store, make_role: Callable) -> None:
    add(store, make_record(job_id=5))
    role = make_role("reader")
    roles.grant(store.db, writer=None, reader=role.name)
    reader = readonly.Reader.open(role.url, password_file=role.password_file)
    try:
        assert reader.rows("SELECT job_id, user_name FROM jobs") == [{"job_id": 5, "user_name": "alice"}]
        with pytest.raises(readonly.DatabaseUnavailable, match="read-only"):
            reader.rows("DELETE FROM jobs")
    finally:
        reader.close()
    with pytest.raises(StoreUnavailable, match="permission denied"):
        Store.open(role.url, 5.0, password_file=role.password_file).add_part(make_record(job_id=6))


def test_grants_are_idempotent_and_refuse_unknown_roles(store: Store, make_role: Callable) -> None:
    name = make_role("writer").name
    assert roles.grant(store.db, name, None) == roles.grant(store.db, name, None)
    with pytest.raises(StoreError, match="does not exist"):
        roles.grant(store.db, "jc_nobody", None)


def test_grants_refuse_a_schema_where_every_role_may_create_objects(
    store: Store, make_role: Callable
) -> None:
    # The writer's functions run as their owner: an object another role planted in their schema could
    # be called in their place.
    schema_name = store.db.execute("SELECT current_schema()").fetchone()[0]
    store.db.execute(f"GRANT CREATE ON SCHEMA {schema_name} TO PUBLIC")
    with pytest.raises(StoreError, match="REVOKE CREATE"):
        roles.grant(store.db, make_role("writer").name, None)


def test_a_password_file_must_be_private_and_not_a_link(
    postgres_server: postgres.Server, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSFILE")  # only the file can give the password now
    secret = tmp_path / "password"
    secret.write_text(postgres_server.password_file.read_text())
    secret.chmod(0o644)
    with pytest.raises(StoreError, match="readable by its owner only"):
        Store.open(postgres_url, 5.0, password_file=str(secret))
    secret.chmod(0o600)
    Store.open(postgres_url, 5.0, password_file=str(secret)).close()
    (tmp_path / "link").symlink_to(secret)
    with pytest.raises(StoreError, match="password_file"):
        Store.open(postgres_url, 5.0, password_file=str(tmp_path / "link"))


def _deliver_node(config: Config, start: Any) -> None:
    start.wait(timeout=120)  # all 64 at once, as epilogs finishing together
    deliver_outbox(config, lambda level, message: None)


def test_64_nodes_deliver_through_a_server_restart_each_record_once(
    postgres_server: postgres.Server, postgres_url: str, tmp_path: Path
) -> None:
    Store.open(postgres_url, 5.0).close()
    configs = []
    for index in range(NODES):
        outbox = tmp_path / f"outbox-{index:02d}"
        for n in range(RECORDS_PER_NODE):
            outbox_files.write(outbox, make_record(job_id=n, node=f"node{index:03d}", rows=360), fsync=False)
        paths = Paths(outbox=outbox, quarantine=tmp_path / "quarantine")
        configs.append(Config(paths=paths, database=Database(url=postgres_url, busy_timeout_s=5.0)))
    total = NODES * RECORDS_PER_NODE
    context = multiprocessing.get_context("fork")
    start = context.Barrier(NODES)
    workers = [context.Process(target=_deliver_node, args=(c, start)) for c in configs]
    for worker in workers:
        worker.start()
    watcher = Store.open(postgres_url, 5.0)
    deadline = time.monotonic() + 120
    while count(watcher, "job_parts") < NODES // 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    watcher.close()
    postgres_server.ctl("stop")  # cuts every session: commits in flight are either whole or absent
    try:
        for worker in workers:
            worker.join(timeout=120)
    finally:
        postgres_server.ctl("start")
    left = sum(len(outbox_files.pending(c.paths.outbox)) for c in configs)
    assert 0 < left < total  # the outage was in the middle: some stored, some kept for later
    for config in configs:
        deliver_outbox(config, lambda level, message: None)  # the next deliveries, once it is back
    assert sum(len(outbox_files.pending(c.paths.outbox)) for c in configs) == 0
    check = Store.open(postgres_url, 5.0)
    keys = check.db.execute(
        "SELECT j.job_id, p.node FROM job_parts p JOIN jobs j ON j.id = p.job ORDER BY 1, 2"
    ).fetchall()
    assert len(keys) == len(set(keys)) == total
    assert (count(check, "jobs"), count(check, "footprints")) == (RECORDS_PER_NODE, total)
    assert not (tmp_path / "quarantine").exists()
    check.close()


def test_the_duplicate_check_finds_a_part_by_its_indexes_on_a_young_table(store: Store) -> None:
    # The writer function's EXISTS check keeps a generic plan for its session. Planned on a table of a page
    # or two, a join scanned every part for each record delivered while the table grew.
    for job_id in range(3):
        add(store, make_record(job_id=job_id))
    placeholders = {
        "cluster": "$1",
        "job_id": "$2",
        "restart_count": "$3",
        "uid": "$4",
        "node": "$5",
        "run": "$6",
    }
    statement = re.sub(r":(\w+)", lambda m: placeholders[m[1]], schema.FIND_PART)
    store.db.execute("SET plan_cache_mode = force_generic_plan")
    store.db.execute(
        f"PREPARE find_part (text, bigint, bigint, bigint, text, text) AS SELECT EXISTS ({statement})"
    )
    plan = "\n".join(
        r[0] for r in store.db.execute("EXPLAIN EXECUTE find_part ('hpc', 1, 0, 1000, 'node001', '')")
    )
    assert "Seq Scan" not in plan
    assert "job_parts_job_node_key" in plan


def test_parts_of_a_many_node_job_wait_on_each_other_only_to_widen_its_span(
    store: Store, postgres_url: str
) -> None:
    add(store, make_record(node="node001", rows=6))
    first, second = Store.open(postgres_url, 5.0), Store.open(postgres_url, 0.5)  # second: 0.5 s lock_timeout
    try:
        first.db.begin_write()
        first.write_parts(first.prepare_parts([(make_record(node="node002", rows=8), None, None)]))
        # node002's epilog ended later: its open transaction holds the job's row to widen it. A part
        # within the span stored so far does not wait for it; one that widens the span too does.
        assert add(second, make_record(node="node003", rows=4)) is not None
        with pytest.raises(StoreUnavailable, match="lock timeout"):
            add(second, make_record(node="node004", rows=10))
        first.db.commit()
        assert add(second, make_record(node="node004", rows=10)) is not None
        span = store.db.execute("SELECT start_s, end_s FROM jobs").fetchone()
        assert (span, count(store, "job_parts")) == ((START, START + 100), 4)
    finally:
        first.close()
        second.close()


def test_two_nodes_seen_parts_stored_at_once_make_one_job(store: Store, postgres_url: str) -> None:
    """Slurm 22.05's `seen:` runs differ per node: a node's part waits for the other's transaction to
    join its job (the job lock, writer_functions), never inserting a second job beside it."""
    first, second = Store.open(postgres_url, 5.0), Store.open(postgres_url, 0.5)  # second: 0.5 s lock_timeout
    try:
        first.db.begin_write()
        first.write_parts(
            first.prepare_parts([(make_record(node="node001", run="seen:1767225600"), None, None)])
        )
        with pytest.raises(StoreUnavailable, match="lock timeout"):
            add(second, make_record(node="node002", run="seen:1767225601"))
        first.db.commit()
        assert add(second, make_record(node="node002", run="seen:1767225601")) is not None
        rows = store.db.execute(
            "SELECT j.run, COUNT(p.id) FROM jobs j JOIN job_parts p ON p.job = j.id GROUP BY j.run"
        )
        assert rows.fetchall() == [("seen:1767225600", 2)]
    finally:
        first.close()
        second.close()


def test_upgrading_from_version_6_rebuilds_the_writer_functions(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:6])
        old = Store.open(postgres_url, 5.0)
    head = writer_functions._FUNCTIONS[0][0]  # a stand-in for version 6's body: it stores nothing
    old.db.execute(f"CREATE OR REPLACE FUNCTION {head} LANGUAGE sql AS 'SELECT NULL::bigint'")
    old.close()
    upgraded = Store.open(postgres_url, 5.0)
    assert add(upgraded, make_record()) is not None
    assert count(upgraded, "job_parts") == 1
    upgraded.close()


def test_concurrent_upgrades_of_an_empty_database_apply_each_migration_once(postgres_url: str) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_open_and_close, args=(postgres_url,)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * 8
    opened = Store.open(postgres_url, 5.0)
    versions = [r[0] for r in opened.db.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [m.version for m in migrations.MIGRATIONS]
    opened.close()


def _open_and_close(url: str) -> None:
    Store.open(url, 30.0).close()


def test_an_sqlite_database_migrates_into_postgresql_whole(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store.open(sqlite_url, 5.0)
    first = add(old, make_record(job_id=1, node="node001"))
    add(old, make_record(job_id=1, node="node002"))
    add(old, make_record(job_id=2, restart_count=1))
    old.save_footprint(first, {**FOOTPRINT, "months": []})  # a second version: history must survive
    old.upsert_running(make_record(job_id=3), b"{}", None)
    node_intervals.add(old, node_document(interval(START), interval(START + 300)))
    old.close()
    config = tmp_path / "jobcarbon.yaml"
    config.write_text(f"database:\n  url: '{postgres_url}'\n")
    monkeypatch.setenv("JOBCARBON_CONFIG", str(config))
    schema_before = _keys_indexes_and_triggers(postgres_url)
    assert main.main(["db", "migrate", "--from", sqlite_url]) == 0
    assert _keys_indexes_and_triggers(postgres_url) == schema_before  # dropped for the COPY, made again
    out = capsys.readouterr().out
    assert "jobs: 2 rows" in out
    assert out.endswith(f"copied 2 jobs into {postgres_url}\n")
    new = Store.open(postgres_url, 5.0)
    old = Store.open(sqlite_url, 5.0)
    for table in ("jobs", "job_parts", "timeline", "footprints", "footprint_months", "running_parts",
                  "node_intervals"):  # fmt: skip
        assert count(new, table) == count(old, table), table
    assert new.footprint_history(first) == old.footprint_history(first)
    assert new.timeline(first) == old.timeline(first)
    assert new.record(first) == old.record(first)
    assert add(new, make_record(job_id=9)) == 4  # identities continue after the copied ids
    old.close()
    new.close()
    assert main.main(["db", "migrate", "--from", sqlite_url]) == 1
    assert "already holds jobs" in capsys.readouterr().err
    assert main.main(["db", "migrate", "--from", str(tmp_path / "old.db")]) == 1
    assert capsys.readouterr().err.endswith("expected sqlite:////absolute/path.db\n")


def _keys_indexes_and_triggers(url: str) -> set[tuple[str, ...]]:
    store = Store.open(url, 5.0)
    found = store.db.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = current_schema()::regnamespace "
        "UNION SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "UNION SELECT tgrelid::regclass::text, tgname, tgenabled::text FROM pg_trigger "
        "WHERE tgrelid::regclass::text NOT LIKE '%.%' AND NOT tgisinternal"
    ).fetchall()
    store.close()
    return set(found)


def test_the_writer_role_stores_a_parts_waste_and_gpu_utilisation(store: Store, make_role: Callable) -> None:
    from tests.jobdb import Job, gpu

    idle = gpu(0)
    document = Job(
        71, cpu_used=0.5, gpus=[idle], gpu_w={idle["uuid"]: (80.0, "measured")}, gpu_util={idle["uuid"]: 0}
    ).record()
    role = make_role("writer")
    roles.grant(store.db, writer=role.name, reader=None)
    writer = Store.open(role.url, 5.0, create=False, password_file=role.password_file)
    try:
        assert add(writer, document) is not None  # through the functions migration 12 rebuilt
    finally:
        writer.close()
    use = document["efficiency"]
    row = store.db.execute(
        "SELECT idle_gpu_j, waste_j, gpu_util_pct, gpu_sampled_s FROM job_parts"
    ).fetchone()
    assert row[0] == pytest.approx(use["idle_gpu_j"])
    assert row[1] == pytest.approx(use["idle_gpu_j"] + use["idle_cpu_j"], abs=1e-3)
    assert (row[2], row[3]) == (0.0, pytest.approx(3600.0))
