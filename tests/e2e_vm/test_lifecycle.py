"""Job lifecycles on the VM bed where Slurm's semantics are subtle (issue 13): a requeued job, the node
agent killed mid-job, and a job id Slurm hands out again after a controller state reset."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from testbed import vm
from testbed.host import poll
from testbed.vm.config import NODES, SLURM_CONF, SLURM_DEFAULTS

from .conftest import (
    VM2,
    VM3,
    assert_gpu_energy_is_power_times_time,
    ingested_records,
    sampled_s,
    stored_records,
    summary,
    wait_no_agent,
    wait_sampling,
    wrap,
)

pytestmark = pytest.mark.vm


def test_a_requeued_job_gets_one_record_per_run_and_nothing_is_sampled_after_a_run(
    vm_bed: vm.VmCluster,
) -> None:
    """Bug 1: run 0's epilog sees SLURM_JOB_RESTART_COUNT=1; run 0 must still be finalised.

    Slurm holds a requeued job about two minutes (BeginTime) and a run started sooner on the same node
    runs no prolog there (slurmd still holds the job's credential), so run 1 is sent to vm3 at once:
    vm2's agent must then have nothing left to sample."""
    script = 'if [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then sleep 600; else sleep 5; fi'
    job_id = vm_bed.submit(f"--requeue -w {VM2.name} --gres=gpu:1 {wrap(script)}")
    wait_sampling(vm_bed, VM2, f"{job_id}.0")
    vm_bed.slurm(f"scontrol requeue {job_id}")
    poll(lambda: vm_bed.jobs(job_id)[0]["JobState"] == "PENDING" or None, 120, f"job {job_id} requeued")
    vm_bed.wait_idle((VM2,))  # run 0's epilog has run
    wait_no_agent(vm_bed, VM2)  # nothing of run 0 is sampled any more
    vm_bed.slurm(f"scontrol update JobId={job_id} ReqNodeList={VM3.name} StartTime=now")
    (job,) = vm_bed.wait_finished(job_id)
    assert (job["JobState"], job["Restarts"], job["NodeList"]) == ("COMPLETED", "1", VM3.name)
    runs = stored_records(vm_bed, {job_id}, 2)
    assert [(r["restart_count"], r["node"], r["status"]) for r in runs] == [
        (0, VM2.name, "complete"),
        (1, VM3.name, "complete"),
    ]
    assert sampled_s(runs[0]) < 300  # run 0 ends at the requeue, not after its script's 600 s
    for record in runs:
        assert len(record["gpus"]) == 1
        assert_gpu_energy_is_power_times_time(record)


def test_an_agent_killed_mid_job_leaves_a_flagged_record_and_the_next_job_is_measured(
    vm_bed: vm.VmCluster,
) -> None:
    """kill -9 of the node agent while a job runs: the epilog still exits 0 (the job completes and the
    node is not drained), the job's record is built from its journal, marked partial, with samples up
    to the kill and a gap after it; the next job's prolog starts a new agent that measures it whole.

    The killed job has no GPU: a GPU job's intervals wait in the agent until the next GPU energy
    counter read (`nvml.counter_interval_s`) before they reach the journal, so a kill loses them."""
    job_id = vm_bed.submit(f"-w {VM2.name} -n1 {wrap('sleep 30')}")
    wait_sampling(vm_bed, VM2, f"{job_id}.0")
    vm_bed.run(VM2, "sleep 3")  # a few intervals journaled
    (agent,) = vm_bed.agent_pids(VM2)
    killed_at = float(vm_bed.run(VM2, f"date +%s.%N; kill -9 {agent}").stdout)
    (job,) = vm_bed.wait_finished(job_id)
    assert job["JobState"] == "COMPLETED"
    assert vm_bed.node_states()[VM2.name] in ("idle", "mixed")
    (record,) = stored_records(vm_bed, {job_id}, 1)
    assert record["status"] == "partial"
    assert any("sampler not running at job end" in reason for reason in record["partial_reasons"])
    last_sample_s = record["timeline"]["rows"][-1][1]
    killed_s = killed_at - datetime.fromisoformat(record["start"]).timestamp()
    assert 0 < last_sample_s <= killed_s + 1.5  # nothing sampled after the kill
    assert record["elapsed_s"] - last_sample_s > 3  # the rest of the job is a gap, not made up
    assert record["coverage"]["fraction"] < 1
    assert record["energy"]["cpu"]["joules"] > 0
    next_id = vm_bed.submit(f"-w {VM2.name} -n1 --gres=gpu:1 {wrap('sleep 5')}")
    assert [job["JobState"] for job in vm_bed.wait_finished(next_id)] == ["COMPLETED"]
    (measured,) = stored_records(vm_bed, {next_id}, 1)
    assert measured["status"] == "complete", measured["partial_reasons"]
    assert_gpu_energy_is_power_times_time(measured)


REUSED_ID = 4242  # above any id earlier scenarios get, so theirs are never reused


@pytest.fixture
def first_job_id(vm_bed: vm.VmCluster) -> Iterator[None]:
    """FirstJobId=4242 on every node (the controller reads it at each reset), put back afterwards."""
    vm_bed.set_options(NODES, SLURM_CONF, {"FirstJobId": str(REUSED_ID)})
    yield
    vm_bed.set_options(NODES, SLURM_CONF, {"FirstJobId": SLURM_DEFAULTS["FirstJobId"]})


def test_a_job_id_reused_after_a_controller_reset_is_a_separate_job(
    vm_bed: vm.VmCluster, first_job_id: None
) -> None:
    """Bug 2: after a state reset (slurmctld stopped, StateSaveLocation cleared) Slurm gives the same id
    to another user's job on another node, then to a job on the first node again: three runs, three
    records, none merged or dropped; `jobcarbon ID` shows the newest, `--run RUN` each earlier one."""
    runs = [("jcalice", VM2), ("jcbob", VM3), ("jcalice", VM2)]
    for user, node in runs:
        vm_bed.reset_controller()
        assert vm_bed.submit(f"-w {node.name} {wrap('sleep 3')}", user=user) == REUSED_ID
        vm_bed.wait_finished(REUSED_ID)
    # No reset after the last run: the controller goes on from 4243, so later scenarios' ids are new.

    def stored() -> list[dict[str, Any]] | None:
        mine = [r for r in ingested_records(vm_bed) if r["job_id"] == REUSED_ID]
        return sorted(mine, key=lambda r: r["start"]) if len(mine) >= len(runs) else None

    records = poll(stored, 120, f"three separate records of job id {REUSED_ID}")
    assert [(r["user"], r["node"]) for r in records] == [(user, node.name) for user, node in runs]
    assert len({r["run"] for r in records}) == len(runs)
    newest = summary(vm_bed, str(REUSED_ID))
    assert (newest["user"], newest["nodes"]) == ("jcalice", [VM2.name])
    for record in records:
        found = summary(vm_bed, str(REUSED_ID), "--run", str(record["run"]))
        assert (found["user"], found["nodes"]) == (record["user"], [record["node"]])
