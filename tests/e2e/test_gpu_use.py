"""GPU utilisation and waste end to end on the test bed's Slurm: a job holding 2 GPUs that it leaves
idle, and a job that keeps its 1 GPU busy (it writes the stand-in's load file, as a CUDA program keeps
a real GPU busy; testbed.hardware.busy_gpus_script)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from testbed.hardware import SimulatedHardware, busy_gpus_script
from testbed.host import poll
from testbed.slurm import Cluster
from tests.e2e.test_job_facts import _jobcarbon
from tests.e2e.test_jobcarbon import _delivered

pytestmark = pytest.mark.slurm
JOB_S = 30


@pytest.fixture(scope="module")
def gpu_jobs(slurm_cluster: Cluster, slurm_user: str) -> dict[str, tuple[int, dict[str, Any]]]:
    """The idle and the busy job, each with its stored record, once both have ended."""
    load_dir = SimulatedHardware(slurm_cluster.scratch).gpu_load_dir
    submit = slurm_cluster.submit
    ids = {
        "idle": submit(f"sleep {JOB_S}", user=slurm_user, account="physics", gres="gpu:2"),
        "busy": submit(
            f"{busy_gpus_script(load_dir, 97, 30720)}\nsleep {JOB_S}",
            user=slurm_user,
            account="physics",
            gres="gpu:1",
        ),
    }
    found = {}
    for kind, job_id in ids.items():
        assert slurm_cluster.wait_finished(job_id, timeout_s=180).state == "COMPLETED"
        record, _footprint = poll(lambda job_id=job_id: _delivered(slurm_cluster, job_id), 60, "delivery")
        found[kind] = (job_id, record)
    return found


def test_an_idle_2_gpu_job_is_idle_and_wastes_its_gpus_energy(
    gpu_jobs: dict[str, tuple[int, dict[str, Any]]], slurm_cluster: Cluster
) -> None:
    job_id, record = gpu_jobs["idle"]
    use = record["efficiency"]
    assert len(use["gpus"]) == 2
    for gpu in use["gpus"].values():
        assert gpu["idle_fraction"] >= 0.95
        assert gpu["util_max_pct"] == 0
    gpu_j = record["energy"]["gpu"]["joules"]
    assert use["idle_gpu_j"] == pytest.approx(gpu_j, rel=0.02)
    shown = _jobcarbon(slurm_cluster, str(job_id))
    note = re.search(
        r"2 GPUs idle 100 % of the time: ([0-9.]+) (Wh|kWh), [0-9.]+ g CO2e wasted; request", shown
    )
    assert note is not None, shown
    assert float(note[1]) * (3600 if note[2] == "Wh" else 3.6e6) == pytest.approx(gpu_j, rel=0.02)
    summary = json.loads(_jobcarbon(slurm_cluster, str(job_id), "--format", "json"))
    waste = summary["efficiency"]["waste_j"]  # the idle GPUs' energy and the idle cores'
    assert summary["efficiency"]["idle_gpu_j"] == pytest.approx(gpu_j, rel=0.02)
    assert waste == pytest.approx(use["idle_gpu_j"] + use["idle_cpu_j"], abs=0.01)
    listed = _jobcarbon(slurm_cluster, "jobs", "-a", "--fields", "jobid,gpu_util,waste_kwh,waste_co2e_g")
    row = next(line.split() for line in listed.splitlines() if line.split()[:1] == [str(job_id)])
    assert row[1:3] == ["0", "%"]
    assert float(row[3]) == pytest.approx(waste / 3.6e6, rel=0.01)


def test_a_busy_gpu_job_gets_its_utilisation_and_no_idle_note(
    gpu_jobs: dict[str, tuple[int, dict[str, Any]]], slurm_cluster: Cluster
) -> None:
    job_id, record = gpu_jobs["busy"]
    (gpu,) = record["efficiency"]["gpus"].values()
    assert gpu["util_max_pct"] == 97
    assert gpu["idle_fraction"] <= 0.05  # the first tick may come before the script marks it busy
    assert gpu["mem_peak_bytes"] == 30720 * 2**20
    shown = _jobcarbon(slurm_cluster, str(job_id))
    assert "util mean 9" in shown
    assert "GPUs idle" not in shown
    assert "GPU idle" not in shown
