"""How real jobs ended, end to end: a failed, a timed-out, a cancelled job and an array of 3 on the test
bed's Slurm 22.05, each recorded, stored and listed with the state and exit code Slurm reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from testbed.host import REPO_ROOT, poll
from testbed.slurm import Cluster
from tests.e2e.test_jobcarbon import _delivered, _record

pytestmark = pytest.mark.slurm
NAME = "bad\tname"  # a job name is the user's text


@pytest.fixture(scope="module")
def ended(slurm_cluster: Cluster, slurm_user: str) -> dict[str, list[int]]:
    """Job ids by how they end, once all have ended."""
    submit = slurm_cluster.submit
    ids = {
        "timeout": [submit("sleep 300", user=slurm_user, account="physics", extra_args=["--time=1"])],
        "failed": [submit("sleep 2; exit 3", user=slurm_user, account="physics", extra_args=["-J", NAME])],
        "cancelled": [submit("sleep 120", user=slurm_user, account="physics")],
    }
    poll(lambda: _running(slurm_cluster, ids["cancelled"][0]), 60, "the job to cancel to run")
    assert slurm_cluster.slurm("scancel", str(ids["cancelled"][0])).returncode == 0
    array = submit("sleep 2", user=slurm_user, account="physics", extra_args=["--array=0-2"])
    ids["array"] = [array]
    for job_ids in ids.values():
        for job_id in job_ids:
            slurm_cluster.wait_finished(job_id, timeout_s=180)
    tasks = slurm_cluster.slurm("scontrol", "-o", "show", "job", str(array)).stdout
    ids["array"] = sorted(int(line.split()[0].split("=")[1]) for line in tasks.splitlines() if line)
    for job_ids in ids.values():
        for job_id in job_ids:
            slurm_cluster.wait_finished(job_id, timeout_s=60)
    return ids


def _running(cluster: Cluster, job_id: int) -> bool | None:
    shown = cluster.slurm("scontrol", "-o", "show", "job", str(job_id)).stdout
    return True if "JobState=RUNNING" in shown and "Reason=Prolog" not in shown else None


def _jobcarbon(cluster: Cluster, *args: str) -> str:
    env = {**os.environ, "JOBCARBON_CONFIG": str(cluster.jobcarbon_config), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "slurm_plugin", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("kind", "state", "exit_code", "signal"),
    [("failed", "FAILED", 3, 0), ("timeout", "TIMEOUT", 0, 15), ("cancelled", "CANCELLED", 0, 15)],
)
def test_each_record_has_the_state_and_exit_code_slurm_reports(
    ended: dict[str, list[int]], slurm_cluster: Cluster, kind: str, state: str, exit_code: int, signal: int
) -> None:
    (job_id,) = ended[kind]
    result = slurm_cluster.wait_finished(job_id)
    assert (result.state, result.exit_code, result.signal) == (state, exit_code, signal)  # what sacct says
    slurm = _record(slurm_cluster, job_id)["slurm"]
    assert (slurm["state"], slurm["exit_code"], slurm["signal"], slurm["source"]) == (
        state,
        exit_code,
        signal,
        "scontrol",
    )
    assert slurm["time_limit_s"] == (60.0 if kind == "timeout" else None)
    if kind == "timeout":  # a minute and a half of `sleep` on its one core
        efficiency = _record(slurm_cluster, job_id)["efficiency"]
        assert efficiency["cpu_efficiency"] < 0.05
        assert 60 <= efficiency["core_s"] <= 120
    assert (slurm["req_cpus"], slurm["req_gpus"]) == (1, None)


def test_the_array_tasks_carry_the_array_id(ended: dict[str, list[int]], slurm_cluster: Cluster) -> None:
    tasks = ended["array"]
    assert len(tasks) == 3
    facts = [_record(slurm_cluster, job_id)["slurm"] for job_id in tasks]
    assert sorted((f["array_job_id"], f["array_task_id"], f["state"]) for f in facts) == [
        (min(tasks), 0, "COMPLETED"),
        (min(tasks), 1, "COMPLETED"),
        (min(tasks), 2, "COMPLETED"),
    ]


def test_jobs_lists_and_filters_the_real_states(ended: dict[str, list[int]], slurm_cluster: Cluster) -> None:
    every = [job_id for job_ids in ended.values() for job_id in job_ids]
    for job_id in every:
        poll(lambda j=job_id: _delivered(slurm_cluster, j), 30, f"delivery of job {job_id}")
    listing: dict[str, Any] = json.loads(_jobcarbon(slurm_cluster, "jobs", "-a", "--format", "json"))
    states = {job["job_id"]: (job["slurm_state"], job["exit_code"]) for job in listing["jobs"]}
    assert states[ended["failed"][0]] == ("FAILED", 3)
    assert states[ended["timeout"][0]] == ("TIMEOUT", 0)
    assert states[ended["cancelled"][0]] == ("CANCELLED", 0)
    failed = json.loads(_jobcarbon(slurm_cluster, "jobs", "-a", "-s", "F,TO", "--format", "json"))
    assert sorted(job["job_id"] for job in failed["jobs"]) == sorted(ended["failed"] + ended["timeout"])
    text = _jobcarbon(slurm_cluster, str(ended["failed"][0]))
    assert text.splitlines()[0].endswith(": FAILED (exit code 3)")
    assert "  name        badname" in text  # the tab dropped on the node


def test_an_array_is_summarised_and_its_tasks_found_without_sacct(
    ended: dict[str, list[int]], slurm_cluster: Cluster
) -> None:
    array = min(ended["array"])
    for job_id in ended["array"]:
        poll(lambda j=job_id: _delivered(slurm_cluster, j), 30, f"delivery of job {job_id}")
    summary = json.loads(_jobcarbon(slurm_cluster, str(array), "--format", "json"))
    assert summary["schema"] == "jobcarbon/array-summary/1"
    assert [(task["task_id"], task["state"]) for task in summary["tasks"]] == [
        (0, "COMPLETED"),
        (1, "COMPLETED"),
        (2, "COMPLETED"),
    ]
    assert sorted(task["job_id"] for task in summary["tasks"]) == ended["array"]
    task = json.loads(_jobcarbon(slurm_cluster, f"{array}_2", "--format", "json"))  # no sacct on the bed
    assert task["job_id"] == next(t["job_id"] for t in summary["tasks"] if t["task_id"] == 2)
    assert task["slurm"]["array_task_id"] == 2
