"""Read-only queries: job lists with filters and totals, refusals, indexes, deadlines."""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import jsonschema
import pytest

from slurm_plugin.query import job_list
from slurm_plugin.query.visibility import Scope
from slurm_plugin.storage import dialect, readonly
from testbed import postgres
from tests import jobdb
from tests.jobdb import DAY, HOUR, Job

EVERYTHING = Scope(everything=True, uid=0)
LIST_SCHEMA = json.loads((Path(readonly.__file__).parents[1] / "query" / "job_list_schema.json").read_text())
JOBS = [
    Job(201, user="alice", uid=1000, account="physics", partition="batch", start=DAY + 1 * HOUR, rows=10),
    Job(202, user="alice", uid=1000, account="chemistry", partition="gpu", start=DAY + 5 * HOUR, rows=10),
    Job(203, user="bob", uid=1001, account="chemistry", partition="batch", start=DAY + 9 * HOUR, rows=10),
    Job(204, user="bob", uid=1001, account="biology", partition="batch", start=DAY + 30 * HOUR, rows=10),
    Job(205, node="node001", user="carol", uid=1002, account="physics", start=DAY + 12 * HOUR, rows=10),
    Job(205, node="node002", user="carol", uid=1002, account="physics", start=DAY + 12 * HOUR, rows=10),
]


@pytest.fixture(scope="module")
def url(module_db_url: str) -> str:
    store = jobdb.open_store(module_db_url)
    store.upsert_intensity(jobdb.day_series())
    jobdb.store_jobs(store, JOBS)
    store.close()
    return module_db_url


@pytest.fixture
def reader(url: str) -> readonly.Reader:
    opened = readonly.Reader.open(url)
    yield opened
    opened.close()


def listed(reader: readonly.Reader, scope: Scope = EVERYTHING, **changes: object) -> dict:
    wanted = {"since_s": DAY, "until_s": DAY + 48 * HOUR, "mine": False, **changes}
    return readonly.job_list(reader, scope, readonly.JobFilter(**wanted))  # type: ignore[arg-type]


def ids(document: dict) -> list[int]:
    return [job["job_id"] for job in document["jobs"]]


def test_newest_first_with_totals(reader: readonly.Reader) -> None:
    document = listed(reader)
    assert ids(document) == [204, 205, 203, 202, 201]
    assert document["totals"]["jobs"] == 5
    assert document["totals"]["energy_j"] == pytest.approx(sum(j["energy_j"] for j in document["jobs"]))
    assert document["jobs"][1]["nodes"] == 2
    jsonschema.validate(document, LIST_SCHEMA)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"users": ("bob",)}, [204, 203]),
        ({"accounts": ("chemistry",)}, [203, 202]),
        ({"partitions": ("gpu",)}, [202]),
        ({"users": ("alice", "carol"), "accounts": ("physics",)}, [205, 201]),
        ({"states": ("completed",)}, [204, 205, 203, 202, 201]),
        ({"states": ("running",)}, []),
        ({"since_s": DAY + 4 * HOUR, "until_s": DAY + 10 * HOUR}, [203, 202]),
    ],
)
def test_filters(reader: readonly.Reader, changes: dict, expected: list[int]) -> None:
    assert ids(listed(reader, **changes)) == expected


def test_mine_is_the_viewers_uid_and_visibility_still_applies(reader: readonly.Reader) -> None:
    bob = Scope(False, 1001)
    assert ids(listed(reader, Scope(True, 1000), mine=True)) == [202, 201]
    assert ids(listed(reader, bob)) == [204, 203]
    assert ids(listed(reader, bob, users=("alice",))) == []
    coordinator = Scope(False, 4000, frozenset({"chemistry"}))
    assert ids(listed(reader, coordinator)) == [203, 202]


def test_totals_cover_every_match_when_the_table_is_cut(reader: readonly.Reader) -> None:
    document = listed(reader, limit=2)
    assert ids(document) == [204, 205]
    assert document["truncated"] is True
    assert document["totals"]["jobs"] == 5
    assert "showing the newest 2" in job_list.table(document)


def test_table_and_csv(reader: readonly.Reader) -> None:
    document = listed(reader)
    lines = job_list.table(document).splitlines()
    assert lines[0].split()[:3] == ["JobID", "User", "Account"]
    assert lines[-1].startswith("5 jobs: ")
    rows = job_list.csv_text(document).splitlines()
    assert rows[0].split(",") == list(job_list.CSV_COLUMNS)
    assert len(rows) == 6
    assert rows[1].startswith("hpc,204,0,bob,biology,batch,completed,")


def test_a_job_nobody_measured_is_an_error_of_its_own(db_url: str) -> None:
    store = jobdb.open_store(db_url)
    jobdb.store_jobs(store, [Job(301, cpu_w=0.0, notes=["job cgroup never found"])])
    store.close()
    reader = readonly.Reader.open(db_url)
    with pytest.raises(readonly.JobNotMeasured, match="cgroup never found"):
        readonly.job_summary(reader, EVERYTHING, 301)
    reader.close()


def test_a_hidden_job_reads_as_an_unknown_one(reader: readonly.Reader) -> None:
    with pytest.raises(readonly.JobNotFound) as hidden:
        readonly.job_summary(reader, Scope(False, 1001), 201)
    with pytest.raises(readonly.JobNotFound) as unknown:
        readonly.job_summary(reader, Scope(False, 1001), 999999)
    assert str(hidden.value).replace("201", "N") == str(unknown.value).replace("999999", "N")


def test_the_latest_run_of_a_requeued_job_is_shown(db_url: str) -> None:
    store = jobdb.open_store(db_url)
    jobdb.store_jobs(store, [Job(401, rows=5), Job(401, restart_count=1, start=DAY + 20 * HOUR, rows=5)])
    store.close()
    reader = readonly.Reader.open(db_url)
    summary = readonly.job_summary(reader, EVERYTHING, 401)
    reader.close()
    assert summary["restart_count"] == 1
    assert summary["other_runs"] == [{"cluster": "hpc", "restart_count": 0}]


def test_the_connection_is_read_only(reader: readonly.Reader) -> None:
    with pytest.raises(readonly.DatabaseUnavailable, match=r"read-?only"):
        reader.rows("DELETE FROM jobs")


ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"


def test_a_query_past_its_deadline_is_stopped(url: str) -> None:
    late = readonly.Reader.open(url, deadline=0.0)
    with pytest.raises(readonly.DatabaseUnavailable, match="too long"):
        late.rows(ENDLESS)


def test_a_query_that_runs_into_its_deadline_is_stopped_there(url: str) -> None:
    reader = readonly.Reader.open(url, deadline=time.monotonic() + 0.3)
    assert reader.rows("SELECT 1 AS one") == [{"one": 1}]  # time left: the first query runs
    with pytest.raises(readonly.DatabaseUnavailable, match="too long"):
        reader.rows(ENDLESS)
    reader.close()


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT id FROM jobs WHERE job_id = 1", "jobs_job_id"),
        ("SELECT id FROM jobs WHERE uid = 1 AND end_s >= 0 ORDER BY end_s DESC", "jobs_uid_end"),
        ("SELECT id FROM jobs WHERE account = 'a' AND end_s >= 0", "jobs_account_end"),
        ("SELECT id FROM jobs WHERE user_name = 'a' AND end_s >= 0", "jobs_user_end"),
        ("SELECT id FROM jobs WHERE end_s >= 0 ORDER BY end_s DESC", "jobs_end"),
    ],
)
def test_queries_use_their_index(reader: readonly.Reader, sql: str, index: str) -> None:
    explain = "EXPLAIN QUERY PLAN"
    if reader.db.name == dialect.POSTGRESQL:
        # Over six rows PostgreSQL rightly prefers a table scan: forbid it, to see which index fits.
        reader.rows("SELECT set_config('enable_seqscan', 'off', false)")
        explain = "EXPLAIN"
    plan = " ".join(str(list(row.values())[-1]) for row in reader.rows(f"{explain} {sql}"))
    assert index in plan


@pytest.mark.parametrize(
    ("request_", "problem"),
    [
        ({"since_s": "x", "until_s": 1}, "numbers"),
        ({"since_s": 0, "until_s": 1, "users": "alice"}, "list"),
        ({"since_s": 0, "until_s": 1, "users": ["a"] * 51}, "at most"),
        ({"since_s": 0, "until_s": 1, "limit": 10**9}, "limit"),
        ({"since_s": 0, "until_s": 1, "mine": "yes"}, "mine"),
    ],
)
def test_service_filters_are_validated(request_: dict, problem: str) -> None:
    with pytest.raises(readonly.QueryError, match=problem):
        readonly.JobFilter.from_request(request_)


def test_missing_and_unreadable_databases_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(readonly.DatabaseUnavailable, match="does not exist"):
        readonly.Reader.open(f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(readonly.DatabaseUnavailable, match="expected sqlite:////"):
        readonly.Reader.open("mysql://x/y")
    with pytest.raises(readonly.DatabaseUnavailable, match="password in the URL"):
        readonly.Reader.open("postgresql://u:secret@x/y")


def test_a_missing_postgresql_database_is_one_line(postgres_server: postgres.Server) -> None:
    url = postgres_server.url.rsplit("/", 1)[0] + "/jobcarbon_nonexistent"
    with pytest.raises(readonly.DatabaseUnavailable, match="does not exist") as refused:
        readonly.Reader.open(url)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "document",
    [
        {
            "schema": "x",
            "energy": {"gpu": {"devices": {"GPU-1": {"joules": 5.0}}}},
            "timeline": {"rows": [[0] * 5] * 9},
        },
        {
            "timeline": {"rows": [[0] * 5] * 20_000},
            "energy": {"gpu": {"devices": {"GPU-1": {"joules": 5.0}}}},
        },
        {"notes": ['"energy": 1'], "energy": {"gpu": {"devices": {"GPU-1": {"joules": 5.0}}}}},
    ],
    ids=["energy-first", "energy-last", "key-inside-a-string"],
)
def test_the_energy_section_is_found_in_any_record_layout(document: dict) -> None:
    for text in (json.dumps(document, indent=1), json.dumps(document, sort_keys=True, separators=(",", ":"))):
        energy = readonly._record_energy(zlib.compress(text.encode()))
        assert energy == document["energy"]


def test_an_unreadable_record_has_no_energy() -> None:
    assert readonly._record_energy(b"not zlib") is None
    assert readonly._record_energy(zlib.compress(b"[1, 2")) is None
