"""jobcarbon end to end on a real single-node Slurm: real sbatch jobs, real prolog and epilog.

Two users' jobs run side by side on the 2-CPU node, one burning a core and one sleeping, each with
a fake GPU of a different programmed power; RAPL follows the real CPU load (testbed.hardware).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from slurm_plugin.node.agent_client import request
from slurm_plugin.storage import Store, roles
from testbed.hardware import SimulatedHardware, fake_gpus
from testbed.host import REPO_ROOT, ensure_user, poll
from testbed.slurm import Cluster

pytestmark = pytest.mark.slurm

BURN = "end=$(( $(date +%s) + {s} )); while [ $(date +%s) -lt $end ]; do :; done"
SLEEP = "sleep {s}"
GPU_POWER_W = {gpu.uuid: gpu.power_mw / 1000 for gpu in fake_gpus()}


def _record(cluster: Cluster, job_id: int, restart: int = 0) -> dict[str, Any]:
    """The run's record: in the outbox, or in the database once delivery has taken it from there."""
    pattern = f"testbed_{job_id}_{restart}_{cluster.node}_*.json"  # the run ends the name

    def find() -> dict[str, Any] | None:
        try:
            return json.loads(next((cluster.scratch / "outbox").glob(pattern)).read_text())
        except (StopIteration, FileNotFoundError):
            stored = _stored(cluster, job_id, restart)
            return stored[0] if stored else None

    return poll(find, 10, f"record of {job_id}.{restart}")


def _stored(
    cluster: Cluster, job_id: int, restart: int = 0
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """The run's record and current footprint as stored in the test bed's database, or None."""
    store = Store.open(SimulatedHardware(cluster.scratch).database_url, 5.0, create=False)
    try:
        for part_id in store.parts():
            part = store.part(part_id)
            if (part["cluster"], part["job_id"], part["node"]) != ("testbed", job_id, cluster.node):
                continue
            record = store.record(part_id)
            if record["restart_count"] == restart:
                return record, store.footprint(part_id)
    finally:
        store.close()
    return None


def _run_together(cluster: Cluster, jobs: list[tuple[str, str]]) -> list[int]:
    """Submit (user, script) pairs, each with one GPU, and wait until all have finished."""
    ids = [cluster.submit(script, user=user, account="physics", gres="gpu:1") for user, script in jobs]
    for job_id in ids:
        assert cluster.wait_finished(job_id, timeout_s=120).state == "COMPLETED"
    return ids


@pytest.fixture(scope="module")
def burner_and_sleeper(slurm_cluster: Cluster, simulated_hardware: SimulatedHardware, slurm_user: str):
    ensure_user("jcbob")
    before = simulated_hardware.truth()
    ids = _run_together(slurm_cluster, [(slurm_user, BURN.format(s=8)), ("jcbob", SLEEP.format(s=8))])
    after = simulated_hardware.truth()
    truth = {ch: after["joules"][ch] - before["joules"][ch] for ch in after["joules"]}
    return [_record(slurm_cluster, job_id) for job_id in ids], truth


def test_burner_gets_clearly_more_cpu_energy_than_the_sleeper(burner_and_sleeper) -> None:
    (burner, sleeper), _ = burner_and_sleeper
    assert burner["user"] == "jcalice"
    assert sleeper["user"] == "jcbob"
    assert burner["energy"]["cpu"]["joules"] > 1.5 * sleeper["energy"]["cpu"]["joules"] > 0
    for record in (burner, sleeper):
        assert record["status"] == "complete"
        assert record["account"] == "physics"
        assert record["allocated_cpus"]["count"] == 1
        assert record["coverage"]["fraction"] > 0.8


def test_gpu_energy_matches_programmed_power_times_time(burner_and_sleeper) -> None:
    records, _ = burner_and_sleeper
    assert {r["gpus"][0]["uuid"] for r in records} == set(list(GPU_POWER_W)[:2])
    for record in records:
        uuid = record["gpus"][0]["uuid"]
        rows = record["timeline"]["rows"]
        sampled_s = rows[-1][1] - rows[0][0]
        measured = record["energy"]["gpu"]["devices"][uuid]
        assert measured["method"] == "measured"
        assert measured["joules"] == pytest.approx(GPU_POWER_W[uuid] * sampled_s, rel=0.02)


def test_jobs_never_get_more_than_the_node_used(burner_and_sleeper) -> None:
    records, truth = burner_and_sleeper
    assert sum(r["energy"]["cpu"]["joules"] for r in records) <= truth["package-0"]
    assert sum(r["energy"]["dram"]["joules"] for r in records) <= truth["dram-0"]


def test_records_validate_against_the_schema(burner_and_sleeper) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = Path(__file__).parents[2] / "slurm_plugin" / "record_schema.json"
    validator = jsonschema.Draft202012Validator(json.loads(schema_path.read_text()))
    for record in burner_and_sleeper[0]:
        validator.validate(record)


def test_each_job_is_delivered_to_the_database_with_its_footprint(
    burner_and_sleeper, slurm_cluster: Cluster
) -> None:
    for record in burner_and_sleeper[0]:
        job_id = record["job_id"]
        stored, found = poll(lambda j=job_id: _delivered(slurm_cluster, j), 30, f"delivery of job {job_id}")
        assert stored == record
        assert (found["version"], found["current"], found["zone"]) == (1, True, "DE")
        total_j = record["energy"]["total_joules"]
        assert total_j > 0
        rounding_j = 0.0005 * (3 * len(record["timeline"]["rows"]) + 1)  # each energy in mJ (record.py)
        assert found["it_energy_j"] == pytest.approx(total_j, abs=rounding_j)
        assert found["facility_energy_j"] == pytest.approx(1.2 * found["it_energy_j"])
        assert found["rung"] == "zone_yearly"  # no series stored: Electricity Maps' 2025 DE average
        assert found["co2e_g"] == pytest.approx(found["facility_energy_j"] / 3.6e6 * 342.0, rel=1e-3)


def _delivered(cluster: Cluster, job_id: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The stored record and footprint, once the record has also left the outbox."""
    if any((cluster.scratch / "outbox").glob(f"testbed_{job_id}_0_{cluster.node}_*.json")):
        return None
    stored = _stored(cluster, job_id)
    return (stored[0], stored[1]) if stored and stored[1] else None


def test_sampler_killed_mid_job_still_yields_a_partial_record(
    slurm_cluster: Cluster, simulated_hardware: SimulatedHardware, slurm_user: str
) -> None:
    socket_path = SimulatedHardware(slurm_cluster.scratch).spool / "agent.sock"
    job_id = slurm_cluster.submit(SLEEP.format(s=6), user=slurm_user, account="physics")
    status = poll(lambda: _status_with(socket_path, f"{job_id}.0"), 30, f"agent sampling job {job_id}")
    os.kill(status["pid"], 9)
    assert slurm_cluster.wait_finished(job_id, timeout_s=60).state == "COMPLETED"
    record = _record(slurm_cluster, job_id)
    assert record["status"] == "partial"
    assert any("sampler not running at job end" in reason for reason in record["partial_reasons"])
    assert slurm_cluster.node_state() in ("idle", "mixed")


def _status_with(socket_path: Path, key: str) -> dict[str, Any] | None:
    try:
        status = request(socket_path, {"op": "status"}, 1.0)
    except OSError:
        return None
    return status if key in status.get("jobs", []) else None


def test_doctor_finds_no_error_on_the_test_bed(
    slurm_cluster: Cluster, simulated_hardware: SimulatedHardware
) -> None:
    # A process of its own, as an admin runs it: doctor loads NVML, which stays loaded in a process.
    env = {**os.environ, "SLURM_CONF": str(slurm_cluster.conf), "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "slurm_plugin",
            "--config",
            str(slurm_cluster.jobcarbon_config),
            "doctor",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    checks = json.loads(result.stdout)["checks"]
    assert [check for check in checks if check["status"] == "error"] == []
    assert result.returncode == 0
    assert {check["name"] for check in checks if check["status"] == "ok"} >= {
        "spool",
        "prolog_flags",
        "slurm",
    }


def test_broken_config_never_drains_the_node(slurm_cluster: Cluster, slurm_user: str) -> None:
    config = slurm_cluster.jobcarbon_config
    good = config.read_text()
    config.write_text("sampler:\n  interval_s: [not a number\n")
    try:
        job_id = slurm_cluster.submit("true", user=slurm_user)
        assert slurm_cluster.wait_finished(job_id, timeout_s=60).state == "COMPLETED"
    finally:
        config.write_text(good)
    assert slurm_cluster.node_state() in ("idle", "mixed")
    prolog_env = slurm_cluster.scratch / "hook-env" / f"prolog_slurmd-{job_id}.env"
    assert prolog_env.exists()  # the wrapper ran after our prolog, which returned 0


def test_many_concurrent_jobs_each_get_one_record(slurm_cluster: Cluster, slurm_user: str) -> None:
    threads, ids = [], []
    for _ in range(6):
        thread = threading.Thread(target=lambda: ids.append(slurm_cluster.submit("sleep 1", user=slurm_user)))
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    for job_id in ids:
        slurm_cluster.wait_finished(job_id, timeout_s=120)
        assert _record(slurm_cluster, job_id)["job_id"] == job_id


def test_a_real_job_is_delivered_to_postgresql_by_a_writer_role(
    slurm_cluster: Cluster,
    simulated_hardware: SimulatedHardware,
    slurm_user: str,
    postgres_url: str,
    make_role,
) -> None:
    # The node's deliverer runs with slurmd's scrubbed environment: the password comes from the file.
    Store.open(postgres_url, 5.0).close()
    writer = make_role("writer")
    admin = Store.open(postgres_url, 5.0)
    roles.grant(admin.db, writer.name, None)
    config = slurm_cluster.jobcarbon_config
    sqlite = config.read_text()
    database = f"database:\n  url: '{writer.url}'\n  password_file: {writer.password_file}\n"
    config.write_text(sqlite.replace(f"database:\n  url: {simulated_hardware.database_url}\n", database))
    try:
        job_id = slurm_cluster.submit(BURN.format(s=3), user=slurm_user, account="physics")
        assert slurm_cluster.wait_finished(job_id, timeout_s=60).state == "COMPLETED"
        # The record follows the epilog once Slurm has said how the job ended (node/jobfacts.py).
        stored = poll(
            lambda: [p for p in admin.parts() if admin.part(p)["job_id"] == job_id] or None,
            30,
            f"delivery of job {job_id} to PostgreSQL",
        )
    finally:
        config.write_text(sqlite)
    (part_id,) = stored
    state = admin.db.execute("SELECT slurm_state, exit_code FROM jobs WHERE job_id = ?", [job_id]).fetchone()
    assert tuple(state) == ("COMPLETED", 0)  # through the writer role's function
    found = admin.footprint(part_id)
    assert (admin.part(part_id)["user"], found["version"], found["rung"]) == (slurm_user, 1, "zone_yearly")
    assert found["it_energy_j"] == pytest.approx(admin.record(part_id)["energy"]["total_joules"], rel=1e-3)
    admin.close()


REQUEUE = 'if [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then sleep 60; else sleep 4; fi'


def test_a_requeued_job_gets_one_record_per_run_and_run_1_its_whole_gpu(
    slurm_cluster: Cluster, simulated_hardware: SimulatedHardware, slurm_user: str, hook_runs
) -> None:
    """Issue 13, bug 1: run 0's epilog carries restart count 1; run 0 must still end there."""
    socket_path = simulated_hardware.spool / "agent.sock"
    job_id = slurm_cluster.submit(REQUEUE, user=slurm_user, gres="gpu:1", extra_args=["--requeue"])
    poll(lambda: _status_with(socket_path, f"{job_id}.0"), 30, f"agent sampling job {job_id}")
    poll(lambda: _run_time_s(slurm_cluster, job_id) >= 7 or None, 30, f"7 s of job {job_id}")
    requeued_at = time.time()
    requeued = slurm_cluster.slurm("scontrol", "requeue", str(job_id))
    assert requeued.returncode == 0, requeued.stderr
    # Slurm holds a requeued job back two minutes (BeginTime); run 1 then starts with its own prolog.
    assert slurm_cluster.wait_finished(job_id, timeout_s=240).state == "COMPLETED"
    run0, run1 = _record(slurm_cluster, job_id, 0), _record(slurm_cluster, job_id, 1)
    assert hook_runs(job_id) == [
        ("prolog_slurmd", "0"),
        ("epilog_slurmd", "1"),  # Slurm 22.05 counts the requeue before run 0's epilog
        ("prolog_slurmd", "1"),
        ("epilog_slurmd", "1"),
    ]
    # Ended at the requeue, not sampled on as a ghost. Against the requeue's own clock: Slurm's RunTime
    # (whole seconds, from Slurm's start) runs ahead of the record, which starts at the prolog.
    assert requeued_at - 0.5 <= datetime.fromisoformat(run0["end"]).timestamp() <= requeued_at + 12
    assert run0["elapsed_s"] <= 20
    assert 3.5 <= run1["elapsed_s"] <= 10
    for run in (run0, run1):
        assert run["status"] == "complete"
        uuid = run["gpus"][0]["uuid"]
        device = run["energy"]["gpu"]["devices"][uuid]
        assert device["method"] == "measured"  # not split with a ghost run 0 and flagged apportioned
        rows = run["timeline"]["rows"]
        assert device["joules"] == pytest.approx(GPU_POWER_W[uuid] * (rows[-1][1] - rows[0][0]), rel=0.02)
    assert _status_with(socket_path, f"{job_id}.0") is None
    assert slurm_cluster.node_state() in ("idle", "mixed")


def _run_time_s(cluster: Cluster, job_id: int) -> int:
    """The job's RunTime as scontrol shows it ([D-]HH:MM:SS), in seconds."""
    shown = cluster.slurm("scontrol", "-o", "show", "job", str(job_id)).stdout
    found = re.search(r"\bRunTime=(?:(\d+)-)?(\d+):(\d+):(\d+)", shown)
    if found is None:
        return 0
    days, hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def test_without_constrain_cores_a_one_cpu_job_gets_slurms_count_and_an_apportioned_share(
    slurm_cluster: Cluster, simulated_hardware: SimulatedHardware, slurm_user: str
) -> None:
    """Issue 13, bug 3: with ConstrainCores=no a job's cgroup does not confine it to its CPUs."""
    slurm_cluster.restart_slurmd(constrain_cores=False)
    try:
        before = simulated_hardware.truth()
        job_id = slurm_cluster.submit(BURN.format(s=6), user=slurm_user, account="physics")
        assert slurm_cluster.wait_finished(job_id, timeout_s=60).state == "COMPLETED"
        package_j = simulated_hardware.truth()["joules"]["package-0"] - before["joules"]["package-0"]
        record = _record(slurm_cluster, job_id)
    finally:
        slurm_cluster.restart_slurmd(constrain_cores=True)
    assert record["allocated_cpus"]["count"] == 1  # Slurm's count, not the node's 2 CPUs
    cpu = record["energy"]["cpu"]
    assert cpu["method"] == "apportioned"  # never "measured" as if it held the whole package
    # The idle CPU's half of the static power stays with the node.
    static_other_j = record["node_info"]["cpu_idle_power_w"] * record["coverage"]["covered_s"] / 2
    assert 0 < cpu["joules"] <= package_j - 0.95 * static_other_j
    assert any("ConstrainCores=no" in note for note in record["notes"])
    assert slurm_cluster.node_state() in ("idle", "mixed")
