"""The finished-job record, built from a hand-written journal, checked against record_schema.json, and
parsed back as the ingest does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_plugin import __version__, record
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.node import jobfacts
from slurm_plugin.node.journal import Journal
from tests.storage.conftest import GPU, make_record

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "slurm_plugin" / "record_schema.json"
START = 1767225600.0  # 2026-01-01T00:00:00Z
END = START + 40.0
JOB = {
    "cluster": "hpc",
    "job_id": 4242,
    "restart_count": 0,
    "node": "node001",
    "user": "alice",
    "uid": 1000,
    "gid": 1000,
    "account": "physics",
    "partition": "gpu",
    "sluid": None,
    "cpus_per_node": 5,
    "job_gpus": "0",
    "cuda_visible_devices": "0",
}
UUID = GPU["uuid"]


def interval(
    t0: float, t1: float, cpu: list | None, dram: list | None, gpu: list | None, **extra: Any
) -> dict:
    return {
        "type": "interval",
        "t0": START + t0,
        "t1": START + t1,
        "cpu_s": 9.5,
        "cpus": 5,
        "mem_b": 8589934592,
        "cpu": cpu,
        "dram": dram,
        "gpu": {UUID: gpu} if gpu else {},
        **extra,
    }


def journal(**changes: Any) -> Journal:
    """Four samples of a 40 s job, with the edge cases a real run produces."""
    header = {
        "type": "header",
        "version": 1,
        "job": JOB,
        "start": START,
        "first_sample": START + 0.4,
        "gpus": [GPU],
        "node_info": {"ncpus": 16, "mem_total_bytes": 68719476736, "rapl_zones": ["package-0", "dram-0"]},
    }
    intervals = [
        interval(-10, -2, [50.0, "measured"], None, None),  # wholly before the prolog: dropped
        interval(0, 10, [100.0, "measured"], [10.0, "measured"], [500.0, "measured"], cpuset=[0, 1, 2, 3, 8]),
        interval(10, 20, [120.0, "apportioned"], [12.0, "estimated"], [600.0, "integrated"]),
        interval(20, 30, None, None, None),  # RAPL unreadable: a gap, not a zero
        # past the end: only the 10 of 15 s inside the job keep their energy
        interval(30, 45, [80.0, "measured"], [8.0, "measured"], [400.0, "measured"]),
        interval(45, 50, [9.0, "measured"], None, None),  # wholly after the epilog: dropped
    ]
    return Journal(header, intervals, **changes)


def test_totals_and_weakest_method() -> None:
    energy = record.build(journal(), END, [])["energy"]
    assert energy["cpu"] == {
        "joules": 273.333,
        "method": "apportioned",
        "by_method": {"apportioned": 120.0, "measured": 153.333},
    }
    assert energy["dram"] == {
        "joules": 27.333,
        "method": "estimated",
        "by_method": {"estimated": 12.0, "measured": 15.333},
    }
    device = {
        "joules": 1366.667,
        "method": "integrated",
        "by_method": {"integrated": 600.0, "measured": 766.667},
    }
    assert energy["gpu"] == {**device, "devices": {UUID: device}}
    assert energy["total_joules"] == 1667.333


def test_timeline_is_clipped_to_the_job_and_keeps_gaps() -> None:
    document = record.build(journal(), END, [])
    assert document["timeline"] == {
        "origin": "2026-01-01T00:00:00.000Z",
        "columns": ["start_s", "end_s", "cpu_j", "dram_j", "gpu_j"],
        "rows": [
            [0.0, 10.0, 100.0, 10.0, 500.0],
            [10.0, 20.0, 120.0, 12.0, 600.0],
            [20.0, 30.0, None, None, None],
            [30.0, 40.0, 53.333, 5.333, 266.667],
        ],
    }


def test_coverage_counts_only_measured_time_inside_the_job() -> None:
    # 0-10, 10-20 and 30-40 have CPU energy; 20-30 is a gap: 30 of 40 s
    assert record.build(journal(), END, [])["coverage"] == {"fraction": 0.75, "covered_s": 30.0, "samples": 4}


def test_identity_times_and_allocation() -> None:
    document = record.build(journal(), END, [])
    assert document["schema"] == "jobcarbon/job-node-record/1"
    assert (document["cluster"], document["job_id"], document["restart_count"], document["node"]) == (
        "hpc",
        4242,
        0,
        "node001",
    )
    assert (document["user"], document["uid"], document["account"], document["partition"]) == (
        "alice",
        1000,
        "physics",
        "gpu",
    )
    assert document["start"] == "2026-01-01T00:00:00.000Z"
    assert document["end"] == "2026-01-01T00:00:40.000Z"
    assert document["elapsed_s"] == 40.0
    assert document["allocated_cpus"] == {"count": 5, "list": "0-3,8"}
    assert document["gpus"] == [GPU]
    assert document["node_info"]["ncpus"] == 16
    assert document["software"] == {"name": "jobcarbon", "version": __version__}
    assert document["status"] == "complete"
    assert document["partial_reasons"] == []


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [
        ([0, 1, 2, 3, 8], "0-3,8"),
        ([5], "5"),
        ([0, 2, 4], "0,2,4"),
        ([1, 2, 3, 10, 11, 20], "1-3,10-11,20"),
        ([], ""),
    ],
)
def test_cpulist(cpus: list[int], expected: str) -> None:
    assert record._cpulist(cpus) == expected


def test_partial_reasons_collect_every_loss() -> None:
    resume = {"type": "resume", "t": START + 25, "reason": "agent restarted"}
    read = journal(torn=True, resumes=[resume], notes=["GPU 1 is not visible to NVML"])
    document = record.build(read, END, ["epilog ran without a stop from the agent"])
    assert document["status"] == "partial"
    assert document["partial_reasons"] == [
        "epilog ran without a stop from the agent",
        "journal has a torn or corrupt line",
        "sampler restarted at 2026-01-01T00:00:25.000Z: agent restarted",
    ]
    assert document["notes"] == ["GPU 1 is not visible to NVML"]


def test_a_job_no_cpuset_confines_has_slurms_count_and_no_list() -> None:
    samples = Journal({"job": JOB, "start": START, "gpus": []})
    samples.intervals = [dict(interval(0, 10, [5.0, "apportioned"], None, None), cpus=1)]
    assert record.build(samples, END, [])["allocated_cpus"] == {"count": 1, "list": ""}


def test_a_journal_without_samples() -> None:
    document = record.build(Journal({"job": JOB, "start": START}), END, ["the sampler never took a sample"])
    assert document["energy"] == {"cpu": None, "dram": None, "gpu": None, "total_joules": 0}
    assert document["coverage"] == {"fraction": 0.0, "covered_s": 0.0, "samples": 0}
    assert document["allocated_cpus"] == {"count": 0, "list": ""}
    assert document["gpus"] == []
    assert document["status"] == "partial"


def test_end_before_start_has_no_elapsed_time() -> None:
    document = record.build(journal(), START - 5, [])
    assert document["elapsed_s"] == 0.0
    assert document["coverage"]["fraction"] == 0.0
    assert document["timeline"]["rows"] == []


@pytest.mark.parametrize(
    "build",
    [
        lambda: record.build(journal(), END, []),
        lambda: record.build(journal(torn=True), END, ["epilog timed out"]),
        lambda: record.build(Journal({"job": JOB, "start": START}), END, ["no sample"]),
        lambda: record.build(journal(), END, [], slurm=SLURM),
    ],
)
def test_record_validates_against_the_schema(build: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA_PATH.exists():
        pytest.skip(f"{SCHEMA_PATH} is not written yet")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(build())


SLURM = {
    **dict.fromkeys(jobfacts.FIELDS),
    "job_name": "train \u00e9",
    "state": "TIMEOUT",
    "exit_code": 0,
    "signal": 15,
    "time_limit_s": 60.0,
    "submit": "2026-01-01T00:00:00Z",
    "req_gpus": 2,
    "source": "scontrol",
}


def spoil(field: str, value: Any) -> bytes:
    document = make_record()
    document["slurm"] = dict(SLURM)
    target = document
    *parents, last = field.split(".")
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return json.dumps(document).encode()


GOOD_NUMBER = st.one_of(st.integers(0, 2**63 - 1), st.floats(0, 1e6))
GOOD_ROW = st.builds(
    lambda times, energies: [*sorted(times), *energies],
    st.lists(GOOD_NUMBER, min_size=2, max_size=2),
    st.lists(st.none() | GOOD_NUMBER, min_size=3, max_size=3),
)
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-5, max_value=2**64), st.floats(), st.just("1.0")
)
ANY_ROW = st.none() | st.lists(ANY_VALUE, min_size=4, max_size=6)


@given(st.lists(st.one_of(GOOD_ROW, GOOD_ROW, GOOD_ROW, ANY_ROW), max_size=6))
def test_the_fast_row_check_agrees_with_the_row_by_row_one(rows: list[Any]) -> None:
    try:
        record._find_bad_row(rows)
    except record.RecordError:
        assert not record._rows_pass(rows)
        with pytest.raises(record.RecordError):
            record._check_rows(rows)
    else:
        record._check_rows(rows)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"schema": "jobcarbon/job-node-record/1", ', "not JSON"),
        (b"[1, 2]", "record: must be a JSON object"),
        (spoil("node", KeyError), "node: missing"),
        (spoil("job_id", "4242"), "job_id: must be an integer >= 0"),
        (spoil("uid", True), "uid: must be an integer >= 0"),
        (spoil("energy.cpu.joules", -1.0), "energy.cpu.joules: must be a number >= 0"),
        (spoil("energy.gpu.method", "guessed"), "energy.gpu.method: must be one of"),
        (spoil("start", "2026-01-01T00:00:00"), "start: must be a UTC ISO 8601 time"),
        (spoil("end", "yesterday Z"), "end: must be a UTC ISO 8601 time"),
        (spoil("coverage.fraction", 1.5), "coverage.fraction: must be a number from 0 to 1"),
        (spoil("timeline.rows", [[0, 10, -5, None, None]]), "timeline.rows[0]: energies"),
        (spoil("timeline.rows", [[10, 0, 1, 1, 1]]), "timeline.rows[0]: start_s and end_s"),
        (spoil("schema", "jobcarbon/job-node-record/2"), "schema: must be"),
        (spoil("cluster", "a b"), "cluster: must be a name"),
        (spoil("account", "phys\udc80ics"), "account: must be a string or null"),  # a lone surrogate
        (spoil("user", "ali\x00ce"), "user: must be a string"),
        (spoil("allocated_cpus", None), "allocated_cpus.count: missing"),
        (spoil("slurm.state", "failed; DROP"), "slurm.state: must be a Slurm state or null"),
        (spoil("slurm.exit_code", 256), "slurm.exit_code: must be an integer from 0 to 255 or null"),
        (spoil("slurm.job_name", "x" * 129), "slurm.job_name: must be a string of at most 128"),
        (spoil("slurm.source", KeyError), "slurm.source: missing"),
    ],
)
def test_parse_names_the_first_bad_field(data: bytes, reason: str) -> None:
    with pytest.raises(record.RecordError, match=re.escape(reason)):
        record.parse(data)


def test_a_built_record_parses_and_only_a_snapshot_is_running() -> None:
    data = json.dumps(record.build(journal(), END, [])).encode()
    assert record.parse(data)["job_id"] == 4242
    with pytest.raises(record.RecordError, match="status: must be 'running'"):
        record.parse(data, statuses=("running",))


def test_a_bad_record_is_a_jobcarbon_error_and_a_value_error() -> None:
    assert issubclass(record.RecordError, JobcarbonError)
    assert issubclass(record.RecordError, ValueError)


def test_an_agent_of_the_previous_release_still_writes_through_record() -> None:
    from slurm_plugin import outbox

    assert (record.write, record.RUNNING_DIR) == (outbox.write, outbox.RUNNING_DIR)


def test_efficiency_is_cpu_time_over_allocated_core_seconds_and_idle_cores_energy() -> None:
    efficiency = record.build(journal(), END, [])["efficiency"]
    # three whole 10 s intervals of 9.5 CPU-s on 5 cores, and 10 of the last 15 s (9.5 × 2/3 CPU-s)
    used = 9.5 * 3 + 9.5 * 10 / 15
    assert efficiency["cpu_time_s"] == pytest.approx(used, abs=1e-3)
    assert efficiency["core_s"] == 200
    assert efficiency["cpu_efficiency"] == pytest.approx(used / 200, abs=1e-4)
    # each interval's CPU energy times its idle share; the interval without a CPU reading adds nothing
    idle = 100 * 0.81 + 120 * 0.81 + 80 * 10 / 15 * (1 - 9.5 * 10 / 15 / 50)
    assert efficiency["idle_cpu_j"] == pytest.approx(idle, abs=1e-3)
    assert efficiency["mem_peak_bytes"] == 8589934592
    assert record.build(Journal({"job": JOB, "start": START}), END, [])["efficiency"] is None
