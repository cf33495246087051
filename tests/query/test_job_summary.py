"""The job summary: golden text and JSON for stored fixtures, the schema, and the pieces by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from slurm_plugin.query import job_summary, job_summary_text, visibility
from slurm_plugin.storage import readonly
from tests import jobdb
from tests.jobdb import DAY, HOUR, Job

GOLDEN = Path(__file__).parents[1] / "fixtures" / "jobview"
UPDATE = os.environ.get("JOBCARBON_UPDATE_GOLDEN") == "1"  # rewrite the golden files from the code
SCHEMA = json.loads((Path(job_summary.__file__).parent / "job_summary_schema.json").read_text())
EVERYTHING = visibility.Scope(everything=True, uid=0)


@pytest.fixture(scope="module")
def scenario_db(module_db_url: str) -> tuple[str, dict[str, int]]:
    """Every scenario stored once per backend: the same golden files must come out of both."""
    return module_db_url, jobdb.build_scenarios(module_db_url)


def summary_of(url: str, job_id: int) -> dict[str, Any]:
    reader = readonly.Reader.open(url)
    try:
        return job_summary.job_summary(reader, EVERYTHING, job_id)
    finally:
        reader.close()


def check_golden(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with JOBCARBON_UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_text(encoding="utf-8"), (
        f"{path.name} differs (JOBCARBON_UPDATE_GOLDEN=1 updates)"
    )


@pytest.mark.parametrize("name", list(jobdb.scenarios()))
def test_summary_matches_golden(name: str, scenario_db: tuple[str, dict[str, int]]) -> None:
    url, ids = scenario_db
    summary = summary_of(url, ids[name])
    check_golden(GOLDEN / f"{name}.txt", job_summary_text.render(summary) + "\n")
    check_golden(GOLDEN / f"{name}.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("name", list(jobdb.scenarios()))
def test_summary_is_valid_against_its_schema(name: str, scenario_db: tuple[str, dict[str, int]]) -> None:
    url, ids = scenario_db
    jsonschema.validate(summary_of(url, ids[name]), SCHEMA, format_checker=jsonschema.FormatChecker())


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema"]["const"] == job_summary.SCHEMA


def test_figures_add_up(scenario_db: tuple[str, dict[str, int]]) -> None:
    url, ids = scenario_db
    summary = summary_of(url, ids["gpu"])
    energy, carbon = summary["energy"], summary["carbon"]
    parts = [energy["cpu"]["joules"], energy["dram"]["joules"], *(g["joules"] for g in energy["gpus"])]
    assert sum(parts) == pytest.approx(energy["total_j"], abs=0.01)
    assert carbon["it_energy_j"] == pytest.approx(energy["total_j"], rel=1e-6)
    assert carbon["facility_energy_j"] == pytest.approx(1.2 * carbon["it_energy_j"])
    assert summary["equivalent"]["car_km"] == pytest.approx(carbon["co2e_g"] / 106.8, rel=1e-3)
    day = summary["day_range"]
    assert day["greenest"]["co2e_g"] <= carbon["co2e_g"] <= day["dirtiest"]["co2e_g"]


def test_multi_node_power_adds_the_nodes(scenario_db: tuple[str, dict[str, int]]) -> None:
    url, ids = scenario_db
    one = summary_of(url, ids["multi-node"])
    assert one["nodes"] == ["node001", "node002", "node003"]
    assert one["power"]["mean_w"] == pytest.approx(one["energy"]["total_j"] / one["elapsed_s"], rel=1e-3)
    assert len(one["power"]["watts"]) == job_summary.COLUMNS


def test_partial_job_shows_the_gap_and_why(scenario_db: tuple[str, dict[str, int]]) -> None:
    url, ids = scenario_db
    summary = summary_of(url, ids["partial"])
    assert summary["coverage"]["partial"] is True
    assert summary["coverage"]["fraction"] == pytest.approx(45 / 60)
    assert None in summary["power"]["watts"]
    assert "agent killed" in job_summary_text.render(summary)


def part(node: str = "n1", **changes: Any) -> dict[str, Any]:
    base = {
        "node": node, "elapsed_s": 40.0, "cpu_j": 400.0, "cpu_method": "measured", "dram_j": None,
        "dram_method": None, "gpu_j": None, "gpu_method": None, "total_j": 400.0, "coverage_fraction": 1.0,
        "status": "complete", "partial_reasons": [], "notes": [], "gpus": [], "gpu_devices": {},
        "footprint": None, "timeline": [(0.0, 10.0, 100.0, None, None), (10.0, 40.0, 300.0, None, None)],
    }  # fmt: skip
    return {**base, **changes}


JOB = {"cluster": "c", "job_id": 7, "restart_count": 0, "user_name": "u", "uid": 5, "account": None,
       "partition": None, "start_s": 0.0, "end_s": 40.0}  # fmt: skip


def test_power_is_energy_over_time_resampled_by_hand() -> None:
    summary = job_summary.build(JOB, [part()])
    # Two rows: 10 W for 10 s, then 10 W for 30 s; two columns of 20 s each.
    assert summary["power"]["watts"] == [10.0, 10.0]
    assert summary["power"]["mean_w"] == 10.0
    uneven = part(timeline=[(0.0, 20.0, 400.0, None, None), (20.0, 40.0, 0.0, None, None)])
    assert job_summary.build(JOB, [uneven])["power"]["watts"] == [20.0, 0.0]


def test_no_footprint_yet_is_said_plainly() -> None:
    summary = job_summary.build(JOB, [part()])
    assert summary["carbon"] is None
    assert summary["equivalent"] is None
    assert summary["day_range"] is None
    assert "not computed yet" in job_summary_text.render(summary)


def test_an_actual_intensity_wins_over_a_forecast_of_the_same_slot() -> None:
    footprint = {
        "it_energy_j": 3.6e6, "facility_energy_j": 3.6e6, "co2e_g": 100.0, "sources": ["x"],
        "energy_by_rung_j": {"measured_series": 3.6e6}, "scopes": ["lifecycle"], "zone": "Z",
    }  # fmt: skip
    around = [
        {"start_s": 0.0, "end_s": 3600.0, "g_per_kwh": 50.0, "forecast": 0},
        {"start_s": 0.0, "end_s": 3600.0, "g_per_kwh": 10.0, "forecast": 1},
        {"start_s": 3600.0, "end_s": 7200.0, "g_per_kwh": 300.0, "forecast": 1},
    ]
    day = job_summary.build(JOB, [part(footprint=footprint)], around)["day_range"]
    assert (day["greenest"]["g_per_kwh"], day["greenest"]["co2e_g"]) == (50.0, 50.0)
    assert (day["dirtiest"]["g_per_kwh"], day["dirtiest"]["co2e_g"]) == (300.0, 300.0)


def test_sparkline_scales_to_the_peak_and_leaves_gaps_blank() -> None:
    assert job_summary_text.sparkline([0.0, 50.0, 100.0, None]) == "▁▅█ "
    assert job_summary_text.sparkline([0.0, 0.0]) == "▁▁"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "00:00:00"), (59.6, "00:01:00"), (3725, "01:02:05"), (90061, "1-01:01:01")]
)
def test_duration_is_sacct_notation(seconds: float, text: str) -> None:
    assert job_summary_text.duration(seconds) == text


@pytest.mark.parametrize(
    ("joules", "text"), [(12.0, "12.0 J"), (3600.0, "1.00 Wh"), (5.4e5, "150 Wh"), (7.2e6, "2.00 kWh")]
)
def test_energy_units(joules: float, text: str) -> None:
    assert job_summary_text.joules(joules) == text


def test_a_job_nobody_measured_is_an_error_of_its_own(db_url: str) -> None:
    store = jobdb.open_store(db_url)
    jobdb.store_jobs(store, [Job(301, cpu_w=0.0, notes=["job cgroup never found"])])
    store.close()
    reader = readonly.Reader.open(db_url)
    with pytest.raises(job_summary.JobNotMeasured, match="cgroup never found"):
        job_summary.job_summary(reader, EVERYTHING, 301)
    reader.close()


def test_a_hidden_job_reads_as_an_unknown_one(jobs_reader: readonly.Reader) -> None:
    with pytest.raises(job_summary.JobNotFound) as hidden:
        job_summary.job_summary(jobs_reader, visibility.Scope(False, 1001), 201)
    with pytest.raises(job_summary.JobNotFound) as unknown:
        job_summary.job_summary(jobs_reader, visibility.Scope(False, 1001), 999999)
    assert str(hidden.value).replace("201", "N") == str(unknown.value).replace("999999", "N")


def test_the_latest_run_of_a_requeued_job_is_shown(db_url: str) -> None:
    store = jobdb.open_store(db_url)
    jobdb.store_jobs(store, [Job(401, rows=5), Job(401, restart_count=1, start=DAY + 20 * HOUR, rows=5)])
    store.close()
    reader = readonly.Reader.open(db_url)
    summary = job_summary.job_summary(reader, EVERYTHING, 401)
    reader.close()
    assert summary["restart_count"] == 1
    assert summary["other_runs"] == [
        {"cluster": "hpc", "restart_count": 0, "run": "", "start": "2026-01-01T10:00:00Z"}
    ]


def test_jobs_slurm_gave_one_id_are_shown_newest_first_and_by_run(db_url: str) -> None:
    """Issue 13, bug 2: a controller reset gave id 501 to alice's job, then to bob's on the same node."""
    store = jobdb.open_store(db_url)
    alice = Job(501, rows=5, run="start:1767261600")
    bob = Job(
        501, user="bob", uid=1001, account="chemistry", start=DAY + 20 * HOUR, rows=10, run="seen:1767297600"
    )
    jobdb.store_jobs(store, [alice, bob])
    store.close()
    reader = readonly.Reader.open(db_url)
    try:
        newest = job_summary.job_summary(reader, EVERYTHING, 501)
        picked = job_summary.job_summary(reader, EVERYTHING, 501, run="start:1767261600")
        own = job_summary.job_summary(reader, visibility.Scope(False, 1000), 501)
        with pytest.raises(job_summary.JobNotFound, match=r"^no job 501 \(run 'start:1 '\) in"):
            job_summary.job_summary(reader, EVERYTHING, 501, run="start:1 ")
    finally:
        reader.close()
    assert (newest["user"], newest["run"], newest["elapsed_s"]) == ("bob", "seen:1767297600", 600.0)
    assert newest["energy"]["total_j"] == bob.record()["energy"]["total_joules"] == 93600.0  # 600 s at 156 W
    assert newest["other_runs"] == [
        {"cluster": "hpc", "restart_count": 0, "run": "start:1767261600", "start": "2026-01-01T10:00:00Z"}
    ]
    assert (picked["user"], picked["energy"]["total_j"]) == ("alice", 46800.0)  # 300 s at 156 W
    assert [r["run"] for r in picked["other_runs"]] == ["seen:1767297600"]
    assert (own["user"], own["other_runs"]) == ("alice", [])  # bob's job is not even listed to alice
