"""Slurm's facts about a job in `jobcarbon <jobid>` and `jobcarbon jobs` (state, exit code, name, arrays)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from slurm_plugin.query import arrays, job_list, job_summary, job_summary_text
from slurm_plugin.query.job_list import JobFilter
from slurm_plugin.query.visibility import Scope
from slurm_plugin.storage import readonly
from slurm_plugin.storage.readonly import QueryError
from tests import jobdb
from tests.jobdb import DAY, HOUR, Job
from tests.test_record import SLURM

EVERYTHING = Scope(everything=True, uid=0)
SCHEMAS = Path(job_list.__file__).parent


def facts(**changes: object) -> dict[str, object]:
    return {**SLURM, "state": "COMPLETED", "exit_code": 0, "signal": 0, **changes}


JOBS = [
    Job(301, slurm=facts(state="FAILED", exit_code=3, job_name="fail\x1b[2J me")),
    Job(302, slurm=facts(state="TIMEOUT", signal=15), start=DAY + 11 * HOUR),
    Job(303, slurm=facts(state="CANCELLED", signal=15), start=DAY + 12 * HOUR),
    Job(304, slurm=facts(array_job_id=300, array_task_id=1), start=DAY + 13 * HOUR),
    Job(305, start=DAY + 14 * HOUR),  # a record of an earlier release: no state
]


@pytest.fixture(scope="module")
def reader(module_db_url: str) -> Iterator[readonly.Reader]:
    opened = readonly.Reader.open(jobdb.fill(module_db_url, JOBS))
    yield opened
    opened.close()


def listed(reader: readonly.Reader, *states: str) -> list[tuple[int, str | None]]:
    wanted = JobFilter(DAY, DAY + 2 * 24 * HOUR, states=tuple(map(job_list.state_name, states)), mine=False)
    document = job_list.job_list(reader, EVERYTHING, wanted)
    jsonschema.validate(document, json.loads((SCHEMAS / "job_list_schema.json").read_text()))
    return [(job["job_id"], job["slurm_state"]) for job in document["jobs"]]


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (("failed",), [(301, "FAILED")]),
        (("F", "TO"), [(302, "TIMEOUT"), (301, "FAILED")]),
        (("CA",), [(303, "CANCELLED")]),
        (("completed",), [(305, None), (304, "COMPLETED")]),  # an unknown state counts as completed
        (("running",), []),
        ((), [(305, None), (304, "COMPLETED"), (303, "CANCELLED"), (302, "TIMEOUT"), (301, "FAILED")]),
    ],
)
def test_jobs_filter_on_slurms_states(
    reader: readonly.Reader, states: tuple[str, ...], expected: list
) -> None:
    assert listed(reader, *states) == expected


def test_an_unknown_state_is_named() -> None:
    with pytest.raises(QueryError, match="unknown job state 'FINISHED'"):
        job_list.state_name("FINISHED")
    with pytest.raises(QueryError, match="unknown job state"):
        JobFilter.from_request({"since_s": 0, "until_s": 1, "states": ["done"]})


def test_the_table_shows_slurms_state(reader: readonly.Reader) -> None:
    wanted = JobFilter(DAY, DAY + 2 * 24 * HOUR, mine=False)
    lines = job_list.table(job_list.job_list(reader, EVERYTHING, wanted)).splitlines()
    states = {line.split()[0]: line.split()[3] for line in lines[2:-1]}
    assert states == {
        "301": "FAILED",
        "302": "TIMEOUT",
        "303": "CANCELLED",
        "304": "COMPLETED",
        "305": "COMPLETED",
    }


def test_the_summary_shows_state_exit_code_and_a_safe_name(reader: readonly.Reader) -> None:
    summary = job_summary.job_summary(reader, EVERYTHING, 301)
    jsonschema.validate(summary, json.loads((SCHEMAS / "job_summary_schema.json").read_text()))
    assert (summary["slurm"]["state"], summary["slurm"]["exit_code"]) == ("FAILED", 3)
    text = job_summary_text.render(summary)
    assert text.splitlines()[0] == "job 301 on cluster hpc: FAILED (exit code 3)"
    assert "  name        fail?[2J me" in text  # the escape cannot reach the terminal
    cancelled = job_summary_text.render(job_summary.job_summary(reader, EVERYTHING, 303))
    assert cancelled.splitlines()[0] == "job 303 on cluster hpc: CANCELLED (exit code 0, signal 15)"
    task = job_summary_text.render(job_summary.job_summary(reader, EVERYTHING, 304))
    assert "  array       task 1 of array 300" in task
    assert "slurm" not in job_summary.job_summary(reader, EVERYTHING, 305)


ARRAY = [
    Job(300, slurm=facts(array_job_id=300, array_task_id=0), start=DAY + 10 * HOUR),
    Job(308, slurm=facts(array_job_id=300, array_task_id=1), start=DAY + 10 * HOUR, cpu_w=90.0),
    Job(
        309,
        slurm=facts(array_job_id=300, array_task_id=2, state="FAILED", exit_code=1),
        start=DAY + 11 * HOUR,
    ),
    Job(310, slurm=facts(het_job_id=310, het_job_offset=0), start=DAY + 12 * HOUR),
    Job(311, slurm=facts(het_job_id=310, het_job_offset=1), start=DAY + 12 * HOUR, uid=1001, user="bob"),
]


@pytest.fixture
def array_reader(db_url: str) -> Iterator[readonly.Reader]:
    opened = readonly.Reader.open(jobdb.fill(db_url, ARRAY))
    yield opened
    opened.close()


def test_an_array_id_shows_the_arrays_summary(array_reader: readonly.Reader) -> None:
    document = arrays.show(array_reader, EVERYTHING, {"job_id": 300, "cluster": None})
    jsonschema.validate(document, json.loads((SCHEMAS / "array_summary_schema.json").read_text()))
    assert [(t["task_id"], t["job_id"], t["state"]) for t in document["tasks"]] == [
        (0, 300, "COMPLETED"),
        (1, 308, "COMPLETED"),
        (2, 309, "FAILED"),
    ]
    assert document["states"] == {"COMPLETED": 2, "FAILED": 1}
    assert document["totals"]["energy_j"] == pytest.approx(sum(t["energy_j"] for t in document["tasks"]))
    assert document["totals"]["co2e_g"] == pytest.approx(sum(t["co2e_g"] for t in document["tasks"]))
    assert document["tasks"][1]["energy_j"] < document["tasks"][0]["energy_j"]  # half the CPU power
    assert document["most_energy"]["task_id"] in (0, 2)
    text = arrays.text(document).splitlines()
    assert text[0] == "array 300 on cluster hpc: 3 tasks (2 COMPLETED, 1 FAILED)"
    assert text[-1].startswith("total: ")


def test_array_tasks_and_het_components_resolve_from_the_records(array_reader: readonly.Reader) -> None:
    def shown(job_id: int, separator: str, index: int, scope: Scope = EVERYTHING) -> int:
        request = {"job_id": job_id, "cluster": None, "member": {"separator": separator, "index": index}}
        return arrays.show(array_reader, scope, request)["job_id"]

    assert shown(300, "_", 2) == 309
    assert shown(310, "+", 1) == 311
    with pytest.raises(job_summary.JobNotFound):
        shown(300, "_", 7)
    with pytest.raises(job_summary.JobNotFound):  # not bob's to see: the same answer as none
        shown(300, "_", 1, Scope(False, 1001))
    assert shown(310, "+", 1, Scope(False, 1001)) == 311
    with pytest.raises(QueryError, match="member must be"):
        shown(300, "-", 1)
    with pytest.raises(job_summary.JobNotFound):  # bob sees no task of the array
        arrays.show(array_reader, Scope(False, 1001), {"job_id": 300, "cluster": None})


IDLE_GPU = jobdb.gpu(0)
WASTEFUL_ARRAY = [
    Job(320, slurm=facts(array_job_id=320, array_task_id=0), cpu_used=0.9, start=DAY + 10 * HOUR),
    Job(
        321,
        slurm=facts(array_job_id=320, array_task_id=1),
        cpu_used=0.9,
        gpus=[IDLE_GPU],
        gpu_w={IDLE_GPU["uuid"]: (60.0, "measured")},
        gpu_util={IDLE_GPU["uuid"]: 0},
        start=DAY + 11 * HOUR,
    ),
]


def test_an_arrays_waste_is_its_tasks_waste(db_url: str) -> None:
    reader = readonly.Reader.open(jobdb.fill(db_url, WASTEFUL_ARRAY))
    try:
        document = arrays.show(reader, EVERYTHING, {"job_id": 320, "cluster": None})
        listed = job_list.job_list(reader, EVERYTHING, JobFilter(0, 2e9, mine=False))
    finally:
        reader.close()
    jsonschema.validate(document, json.loads((SCHEMAS / "array_summary_schema.json").read_text()))
    as_listed = {job["job_id"]: job for job in listed["jobs"]}
    cpu_only, with_gpu = document["tasks"]
    for task in document["tasks"]:  # each task's figures are the job list's
        job = as_listed[task["job_id"]]
        assert (task["waste_j"], task["waste_co2e_g"], task["gpu_util_pct"]) == (
            job["waste_j"], job["waste_co2e_g"], job["gpu_util_pct"],
        )  # fmt: skip
    assert cpu_only["gpu_util_pct"] is None
    assert with_gpu["gpu_util_pct"] == 0.0
    # the idle GPU's whole energy is waste, with the idle tenth of the cores of both tasks
    gpu_j = WASTEFUL_ARRAY[1].record()["energy"]["gpu"]["joules"]
    assert with_gpu["waste_j"] - cpu_only["waste_j"] == pytest.approx(gpu_j, rel=1e-3)
    totals = document["totals"]
    assert totals["waste_j"] == pytest.approx(cpu_only["waste_j"] + with_gpu["waste_j"])
    grams = cpu_only["waste_co2e_g"] + with_gpu["waste_co2e_g"]
    assert totals["waste_co2e_g"] == pytest.approx(grams, rel=1e-3)
    text = arrays.text(document).splitlines()
    assert text[1].split()[-2:] == ["GPU", "util"]
    assert text[3].endswith("-")
    assert text[4].endswith("0 %")
    assert text[-1] == "wasted: 76.8 Wh, 20.4 g CO2e (21% of the IT energy: idle GPUs and cores)"


def test_fields_choose_the_columns(reader: readonly.Reader) -> None:
    wanted = JobFilter(DAY, DAY + 2 * 24 * HOUR, states=("failed",), mine=False)
    document = job_list.job_list(reader, EVERYTHING, wanted)
    fields = job_list.field_names(("JobID", "state", "exit_code", "name", "energy_kwh", "co2e_g"))
    lines = job_list.table(document, fields=fields).splitlines()
    assert lines[0].split() == ["JobID", "State", "ExitCode", "JobName", "kWh", "CO2e", "g"]
    (job,) = document["jobs"]
    assert lines[2].split()[:3] == ["301", "FAILED", "3:0"]
    assert "fail?[2J me" in lines[2]  # the name printable
    assert lines[2].split()[-2] == f"{job['energy_j'] / 3.6e6:.3g}"
    with pytest.raises(QueryError, match="unknown field 'gpu_load'"):
        job_list.field_names(("jobid", "gpu_load"))
