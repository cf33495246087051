"""`jobcarbon jobs`: listings with filters and totals, within what the viewer may see; the table and CSV."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from slurm_plugin.query import job_list
from slurm_plugin.query.job_list import JobFilter
from slurm_plugin.query.visibility import Scope
from slurm_plugin.storage import readonly
from slurm_plugin.storage.readonly import QueryError
from tests.jobdb import DAY, HOUR

EVERYTHING = Scope(everything=True, uid=0)
LIST_SCHEMA = json.loads((Path(job_list.__file__).parent / "job_list_schema.json").read_text())


def listed(reader: readonly.Reader, scope: Scope = EVERYTHING, **changes: object) -> dict:
    wanted = {"since_s": DAY, "until_s": DAY + 48 * HOUR, "mine": False, **changes}
    return job_list.job_list(reader, scope, JobFilter(**wanted))  # type: ignore[arg-type]


def ids(document: dict) -> list[int]:
    return [job["job_id"] for job in document["jobs"]]


def test_newest_first_with_totals(jobs_reader: readonly.Reader) -> None:
    document = listed(jobs_reader)
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
def test_filters(jobs_reader: readonly.Reader, changes: dict, expected: list[int]) -> None:
    assert ids(listed(jobs_reader, **changes)) == expected


def test_mine_is_the_viewers_uid_and_visibility_still_applies(jobs_reader: readonly.Reader) -> None:
    bob = Scope(False, 1001)
    assert ids(listed(jobs_reader, Scope(True, 1000), mine=True)) == [202, 201]
    assert ids(listed(jobs_reader, bob)) == [204, 203]
    assert ids(listed(jobs_reader, bob, users=("alice",))) == []
    coordinator = Scope(False, 4000, frozenset({"chemistry"}))
    assert ids(listed(jobs_reader, coordinator)) == [203, 202]


def test_totals_cover_every_match_when_the_table_is_cut(jobs_reader: readonly.Reader) -> None:
    document = listed(jobs_reader, limit=2)
    assert ids(document) == [204, 205]
    assert document["truncated"] is True
    assert document["totals"]["jobs"] == 5
    assert "showing the newest 2" in job_list.table(document)


def test_table_and_csv(jobs_reader: readonly.Reader) -> None:
    document = listed(jobs_reader)
    lines = job_list.table(document).splitlines()
    assert lines[0].split() == [
        "JobID",
        "User",
        "Account",
        "State",
        "Start",
        "Elapsed",
        "Wh",  # the energy column's one unit, by its largest value
        "CO2e",
        "g",
        "Cover",
    ]
    assert lines[-1].startswith("5 jobs: ")
    assert max(len(line) for line in lines[:-1]) <= 100
    wide = job_list.table(document, wide=True).splitlines()
    assert wide[0].split()[3:4] + wide[0].split()[-2:] == ["Partition", "Intensity", "Cover"]
    assert [line.split()[0] for line in wide[2:-1]] == [line.split()[0] for line in lines[2:-1]]
    rows = job_list.csv_text(document).splitlines()
    assert rows[0].split(",") == list(job_list.CSV_COLUMNS)
    assert len(rows) == 6
    assert rows[1].startswith("hpc,204,0,bob,biology,batch,completed,")


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
    with pytest.raises(QueryError, match=problem):
        JobFilter.from_request(request_)
