"""Advice on finished jobs (query/advice.py) from their stored efficiency and Slurm state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from slurm_plugin.config import Advice
from slurm_plugin.query import advice, job_list, job_summary, job_summary_text
from slurm_plugin.query.visibility import Scope
from slurm_plugin.storage import readonly
from tests import jobdb
from tests.jobdb import DAY, HOUR, Job, gpu
from tests.query.test_job_facts import SCHEMAS, facts

EVERYTHING = Scope(everything=True, uid=0)
GIB = 2**30
JOBS = [
    # an hour on 4 cores, one of them busy, 1 GiB used of 16 GiB asked
    Job(401, cpu_used=0.25, mem_b=GIB, slurm=facts(req_mem_mb=16 * 1024.0)),
    Job(402, cpu_used=0.9, mem_b=12 * GIB, slurm=facts(req_mem_mb=16 * 1024.0), start=DAY + 12 * HOUR),
    Job(
        403, cpu_used=0.9, slurm=facts(state="TIMEOUT", signal=15, time_limit_s=3600.0), start=DAY + 14 * HOUR
    ),
    Job(404, cpu_used=0.9, slurm=facts(state="FAILED", exit_code=2), start=DAY + 16 * HOUR),
    # two GPUs held and never used; one GPU kept busy
    Job(
        405,
        cpu_used=0.9,
        gpus=[gpu(0), gpu(1)],
        gpu_w={gpu(0)["uuid"]: (60.0, "measured"), gpu(1)["uuid"]: (70.0, "measured")},
        gpu_util={gpu(0)["uuid"]: 0, gpu(1)["uuid"]: 0},
        start=DAY + 18 * HOUR,
    ),
    Job(
        406,
        cpu_used=0.9,
        gpus=[gpu(2)],
        gpu_w={gpu(2)["uuid"]: (350.0, "measured")},
        gpu_util={gpu(2)["uuid"]: 96},
        start=DAY + 20 * HOUR,
    ),
]


@pytest.fixture(scope="module")
def reader(module_db_url: str) -> Iterator[readonly.Reader]:
    opened = readonly.Reader.open(jobdb.fill(module_db_url, JOBS))
    yield opened
    opened.close()


def summary(reader: readonly.Reader, job_id: int) -> dict:
    return job_summary.job_summary(reader, EVERYTHING, job_id)


def test_efficiency_and_the_idle_cores_energy(reader: readonly.Reader) -> None:
    document = summary(reader, 401)
    use = document["efficiency"]
    assert use["cpu_efficiency"] == pytest.approx(0.25)
    assert use["core_s"] == pytest.approx(4 * 3600)
    cpu_j = document["energy"]["cpu"]["joules"]
    assert use["idle_cpu_j"] == pytest.approx(0.75 * cpu_j, rel=1e-4)  # three of four cores idle
    carbon = document["carbon"]
    expected_g = use["idle_cpu_j"] * carbon["co2e_g"] / carbon["it_energy_j"]
    assert use["idle_cpu_co2e_g"] == pytest.approx(expected_g, abs=1e-4)
    assert use["mem_used_fraction"] == pytest.approx(1 / 16)


def test_a_wasteful_job_gets_advice_and_a_good_one_none(reader: readonly.Reader) -> None:
    wasteful = advice.notes(summary(reader, 401), Advice())
    assert len(wasteful) == 2
    assert wasteful[0].startswith("CPU efficiency 25%: the idle cores used ")
    assert wasteful[0].endswith("g CO2e; request fewer cores")
    assert wasteful[1].startswith("memory peak 1 GiB of 16 GiB requested (6%)")
    document = summary(reader, 401) | {"advice": wasteful}
    jsonschema.validate(document, json.loads((SCHEMAS / "job_summary_schema.json").read_text()))
    assert "  - CPU efficiency 25%" in job_summary_text.render(document)
    assert advice.notes(summary(reader, 402), Advice()) == []
    assert advice.notes(summary(reader, 401), Advice(cpu_efficiency_below=0.2, memory_used_below=0.05)) == []
    assert advice.notes(summary(reader, 401), Advice(min_elapsed_s=7200)) == []


def test_a_timeout_and_a_failure_are_costed(reader: readonly.Reader) -> None:
    (timeout,) = advice.notes(summary(reader, 403), Advice())
    assert timeout.startswith("ran into its time limit of 01:00:00: ")
    (failed,) = advice.notes(summary(reader, 404), Advice())
    document = summary(reader, 404)
    assert failed.startswith(f"failed: {job_summary_text.joules(document['energy']['total_j'])}, ")
    assert failed.endswith("g CO2e spent without a complete result")


def test_idle_gpus_are_waste_with_a_note_in_energy_terms_and_a_busy_gpu_gets_none(
    reader: readonly.Reader,
) -> None:
    idle = summary(reader, 405)
    use = idle["efficiency"]
    assert [g["idle_fraction"] for g in use["gpus"]] == [1.0, 1.0]
    gpu_j = sum(g["joules"] for g in idle["energy"]["gpus"])
    assert use["idle_gpu_j"] == pytest.approx(gpu_j, rel=1e-4)
    assert use["waste_j"] == pytest.approx(use["idle_gpu_j"] + use["idle_cpu_j"], rel=1e-6)
    carbon = idle["carbon"]
    assert use["waste_co2e_g"] == pytest.approx(
        use["waste_j"] * carbon["co2e_g"] / carbon["it_energy_j"], rel=1e-3
    )
    notes = advice.notes(idle, Advice())
    assert notes[0].startswith("2 GPUs idle 100 % of the time: ")
    assert notes[0].endswith("g CO2e wasted; request fewer GPUs")
    text = job_summary_text.render({**idle, "advice": notes})
    assert "util mean 0 %, max 0 %, idle 100 % of the time" in text
    busy = summary(reader, 406)
    assert busy["efficiency"]["gpus"][0]["util_mean_pct"] == 96.0
    assert busy["efficiency"]["idle_gpu_j"] == 0.0
    assert not any("GPU" in note for note in advice.notes(busy, Advice()))


def test_jobs_lists_gpu_utilisation_and_waste_from_the_stored_columns(reader: readonly.Reader) -> None:
    wanted = job_list.JobFilter(DAY, DAY + 2 * DAY, mine=False)
    document = job_list.job_list(reader, EVERYTHING, wanted)
    jobs = {job["job_id"]: job for job in document["jobs"]}
    idle, busy = summary(reader, 405)["efficiency"], summary(reader, 406)["efficiency"]
    assert jobs[405]["gpu_util_pct"] == 0.0
    assert jobs[406]["gpu_util_pct"] == 96.0
    assert jobs[401]["gpu_util_pct"] is None  # no GPU
    assert jobs[405]["waste_j"] == pytest.approx(idle["waste_j"], rel=1e-6)
    assert jobs[405]["waste_co2e_g"] == pytest.approx(idle["waste_co2e_g"], rel=1e-3)
    assert jobs[406]["waste_j"] == pytest.approx(busy["idle_cpu_j"], rel=1e-6)
    assert document["totals"]["waste_j"] == pytest.approx(sum(j["waste_j"] for j in jobs.values()), rel=1e-6)
    fields = job_list.field_names(("jobid", "gpu_util", "waste_kwh", "waste_co2e_g"))
    lines = job_list.table(document, fields=fields).splitlines()
    assert lines[0].split() == ["JobID", "GPU", "util", "Waste", "kWh", "Waste", "CO2e", "g"]
    row = next(line.split() for line in lines if line.startswith("405 "))
    assert row[1:3] == ["0", "%"]
    assert row[3] == f"{jobs[405]['waste_j'] / 3.6e6:.3g}"
    schema = json.loads((Path(job_list.__file__).parent / "job_list_schema.json").read_text())
    jsonschema.validate(document, schema)
