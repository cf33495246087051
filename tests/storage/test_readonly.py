"""The read path's SQL: runs, parts, intensity and listings as rows; refusals, indexes, deadlines."""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import pytest

from slurm_plugin.storage import dialect, readonly
from testbed import postgres
from tests import jobdb
from tests.jobdb import DAY, HOUR, Job

RUNGS = ("measured_series", "forecast_series", "zone_yearly", "country_yearly", "constant", "world")
JOBS = [
    Job(201, user="alice", uid=1000, account="physics", partition="batch", start=DAY + 1 * HOUR, rows=10),
    Job(203, user="bob", uid=1001, account="chemistry", partition="batch", start=DAY + 9 * HOUR, rows=10),
    Job(203, user="bob", uid=1001, account="chemistry", start=DAY + 20 * HOUR, restart_count=1, rows=10),
    Job(205, node="node002", user="carol", uid=1002, account="physics", start=DAY + 12 * HOUR, rows=10),
    Job(205, node="node001", user="carol", uid=1002, account="physics", start=DAY + 12 * HOUR, rows=10),
]


@pytest.fixture(scope="module")
def url(module_db_url: str) -> str:
    return jobdb.fill(module_db_url, JOBS)


@pytest.fixture
def reader(url: str) -> readonly.Reader:
    opened = readonly.Reader.open(url)
    yield opened
    opened.close()


def test_a_jobs_runs_come_oldest_first_with_their_parts_decoded(reader: readonly.Reader) -> None:
    runs = readonly.job_runs(reader, 203)
    assert [(r["job_id"], r["restart_count"]) for r in runs] == [(203, 0), (203, 1)]
    parts = readonly.job_parts(reader, readonly.job_runs(reader, 205)[0]["id"])
    assert [p["node"] for p in parts] == ["node001", "node002"]
    assert len(parts[0]["timeline"]) == 10
    assert parts[0]["footprint"]["zone"] == jobdb.SETTINGS.zone
    assert parts[0]["notes"] == []
    assert readonly.job_runs(reader, 999) == []


def test_intensity_between_is_the_overlapping_slots_in_time_order(reader: readonly.Reader) -> None:
    slots = readonly.intensity_between(reader, jobdb.SETTINGS.zone, DAY + 1.5 * HOUR, DAY + 3 * HOUR)
    assert [s["start_s"] for s in slots] == sorted(s["start_s"] for s in slots)
    assert all(s["start_s"] < DAY + 3 * HOUR and s["end_s"] > DAY + 1.5 * HOUR for s in slots)
    assert {s["start_s"] for s in slots} >= {DAY + HOUR, DAY + 2 * HOUR}
    assert readonly.intensity_between(reader, "nowhere", DAY, DAY + HOUR) == []


def select(reader: readonly.Reader, visible: tuple[str, dict], **changes: object) -> tuple[list[dict], dict]:
    wanted = {"since_s": DAY, "until_s": DAY + 48 * HOUR, "limit": 100, "rungs": RUNGS, **changes}
    return readonly.job_listing(reader, readonly.JobSelection(visible=visible, **wanted))  # type: ignore[arg-type]


def test_a_listing_is_the_newest_jobs_and_the_totals_of_every_match(reader: readonly.Reader) -> None:
    everyone = readonly.visible_filter(True, 0, ())
    rows, totals = select(reader, everyone, limit=2)
    assert [(r["job_id"], r["restart_count"], r["nodes"]) for r in rows] == [(203, 1, 1), (205, 0, 2)]
    assert totals["jobs"] == 4
    every_row, _ = select(reader, everyone)
    assert totals["energy_j"] == pytest.approx(sum(r["energy_j"] for r in every_row))
    assert totals["co2e_g"] == pytest.approx(sum(r["co2e_g"] for r in every_row))
    assert {RUNGS[r["rung_rank"]] for r in every_row} <= set(RUNGS)
    nothing = {"jobs": 0, "energy_j": 0, "facility_energy_j": 0, "co2e_g": 0, "waste_j": 0, "waste_co2e_g": 0}
    assert select(reader, everyone, ended=False) == ([], nothing)


def test_a_listing_keeps_to_what_the_viewer_may_see(reader: readonly.Reader) -> None:
    def ids(visible: tuple[str, dict], **changes: object) -> list[int]:
        return [r["job_id"] for r in select(reader, visible, **changes)[0]]

    assert ids(readonly.visible_filter(False, 1001, ())) == [203, 203]
    assert ids(readonly.visible_filter(False, 1000, ("chemistry",))) == [203, 203, 201]
    assert ids(readonly.visible_filter(False, 1000, ("chemistry",)), owner_uid=1000) == [201]
    assert ids(readonly.visible_filter(True, 0, ()), accounts=("physics",), users=("carol",)) == [205]


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
        energy = readonly._record_object(zlib.compress(text.encode()), readonly._ENERGY_KEY)
        assert energy == document["energy"]


def test_an_unreadable_record_has_no_energy() -> None:
    assert readonly._record_object(b"not zlib", readonly._ENERGY_KEY) is None
    assert readonly._record_object(zlib.compress(b"[1, 2"), readonly._ENERGY_KEY) is None


def test_a_record_without_efficiency_is_not_parsed_past_its_timeline() -> None:
    old = json.dumps({"energy": {}, "timeline": {"rows": [[0] * 5] * 20_000}}, indent=1)
    found = readonly._record_object(zlib.compress(old.encode()), readonly._EFFICIENCY_KEY, b'"timeline":')
    assert found is None
    new = json.dumps({"efficiency": {"cpu_efficiency": 0.5}, "timeline": {"rows": []}})
    found = readonly._record_object(zlib.compress(new.encode()), readonly._EFFICIENCY_KEY, b'"timeline":')
    assert found == {"cpu_efficiency": 0.5}
