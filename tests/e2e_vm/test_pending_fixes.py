"""Scenarios for job-lifecycle bugs of issue 13 whose fixes are on other branches (requeue, a reused
job id, cgroup v2 with ConstrainCores=no or without the memory controller). They fail on the code they
were written against, so they run only with JOBCARBON_VM_PENDING=1 and CI does not depend on them: once
a fix is merged, move its scenario into test_cluster.py (adjusting it to the behaviour the fix chose).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from typing import Any

import pytest

from testbed import vm
from testbed.host import poll

from .conftest import ingested_records, stored_records
from .test_cluster import BURN, assert_gpu_energy_is_power_times_time, sampled_s, wrap

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(
        os.environ.get("JOBCARBON_VM_PENDING") != "1",
        reason="waits for the issue-13 lifecycle fixes: set JOBCARBON_VM_PENDING=1 to run",
    ),
]
VM2, VM3 = vm.COMPUTE


def _log_has(bed: vm.VmCluster, node: vm.Node, text: str) -> bool | None:
    done = bed.run(node, f"grep -cF {shlex.quote(text)} /var/log/jobcarbon/jobcarbon.log || true")
    return True if int(done.stdout.strip() or 0) > 0 else None


def test_a_requeued_job_gets_one_record_per_run_with_its_own_gpu_energy(vm_bed: vm.VmCluster) -> None:
    """Bug 1: run 0's epilog sees SLURM_JOB_RESTART_COUNT=1; run 0 must still be finalised."""
    script = 'if [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then sleep 120; else sleep 5; fi'
    job_id = vm_bed.submit(f"--requeue -w {VM2.name} --gres=gpu:1 {wrap(script)}")
    poll(lambda: _log_has(vm_bed, VM2, f"job {job_id}.0: sampling started"), 120, f"sampling of {job_id}.0")
    vm_bed.slurm(f"scontrol requeue {job_id}")
    poll(lambda: _log_has(vm_bed, VM2, f"job {job_id}.1: sampling started"), 300, f"sampling of {job_id}.1")
    (job,) = vm_bed.wait_finished(job_id, timeout_s=300)
    assert (job["JobState"], job["Restarts"]) == ("COMPLETED", "1")
    runs = stored_records(vm_bed, {job_id}, 2)
    assert sorted(record["restart_count"] for record in runs) == [0, 1]
    for record in runs:
        assert_gpu_energy_is_power_times_time(record)  # run 1's GPU not halved with a ghost run 0
    # Nothing is sampled once both runs have ended: the agent leaves.
    poll(lambda: _no_agent(vm_bed, VM2), 60, "vm2's agent to exit once no job is left")


def _no_agent(bed: vm.VmCluster, node: vm.Node) -> bool | None:
    return True if bed.run(node, "pgrep -f 'slurm_plugin[.]node[.]agent'").returncode == 1 else None


@pytest.fixture
def cores_not_constrained(vm_bed: vm.VmCluster) -> Iterator[None]:
    """vm2's slurmd with ConstrainCores=no (cgroup.conf's default), put back afterwards."""
    for value in ("no", "yes"):
        edit = f"sed -i 's/^ConstrainCores=.*/ConstrainCores={value}/' /etc/slurm/cgroup.conf"
        vm_bed.run(VM2, f"{edit} && systemctl restart slurmd")
        vm_bed.wait_idle((VM2,))
        if value == "no":
            yield


def test_a_one_core_job_without_constrain_cores_is_apportioned(
    vm_bed: vm.VmCluster, cores_not_constrained: None
) -> None:
    """Bug 3: cpuset.cpus.effective is the whole node, but Slurm allocated one CPU."""
    job_id = vm_bed.submit(f"-w {VM2.name} -n1 {wrap('sleep 6')}")
    vm_bed.wait_finished(job_id)
    (record,) = stored_records(vm_bed, {job_id}, 1)
    assert record["allocated_cpus"]["count"] == 1
    assert record["energy"]["cpu"]["method"] == "apportioned"


@pytest.fixture
def no_memory_controller(vm_bed: vm.VmCluster) -> Iterator[None]:
    """vm3 booted with `cgroup_disable=memory`, then as before. Its slurmd runs without ConstrainRAMSpace
    and with jobacct_gather/linux: jobacct_gather/cgroup refuses to start without the memory controller
    (slurmd 24.11: "fatal: Unable to initialize jobacct_gather")."""
    vm_bed.restart(VM3, "cgroup_disable=memory")
    edit = "sed -i 's/^ConstrainRAMSpace=.*/ConstrainRAMSpace=no/' /etc/slurm/cgroup.conf && "
    edit += "sed -i 's|^JobAcctGatherType=.*|JobAcctGatherType=jobacct_gather/linux|' /etc/slurm/slurm.conf"
    vm_bed.run(VM3, f"{edit} && systemctl restart slurmd")
    vm_bed.wait_idle((VM3,))
    yield
    vm_bed.restart(VM3)


def test_without_the_memory_controller_a_burner_still_gets_its_cpu_time(
    vm_bed: vm.VmCluster, no_memory_controller: None
) -> None:
    """Bug 4: with no memory.current in the job's cgroup the sampler dropped the job's CPU time."""
    assert "memory" not in vm_bed.run(VM3, "cat /sys/fs/cgroup/cgroup.controllers").stdout.split()
    job_id = vm_bed.submit(f"-w {VM3.name} -n1 {wrap(BURN.format(s=10))}")
    vm_bed.wait_finished(job_id)
    (record,) = stored_records(vm_bed, {job_id}, 1)
    assert record["status"] == "complete", record["partial_reasons"]
    # Alone on the node, a busy core's share is well above the idle share of one of two CPUs (20 W).
    assert record["energy"]["cpu"]["joules"] > 35 * sampled_s(record)


# Last: after a controller reset, job ids start again at 1 and would collide with earlier scenarios'.
def _reset_controller(bed: vm.VmCluster) -> None:
    """Start slurmctld with empty state: job ids start again at 1, as after a state loss."""
    bed.slurm("systemctl stop slurmctld && rm -rf /var/lib/slurm/slurmctld/* && systemctl start slurmctld")
    bed.wait_idle()


def test_a_job_id_reused_after_a_controller_reset_is_a_separate_job(vm_bed: vm.VmCluster) -> None:
    """Bug 2: the same id for another user on another node, then on the first node again."""
    runs = [("jcalice", VM2), ("jcbob", VM3), ("jcalice", VM2)]
    earlier = len([r for r in ingested_records(vm_bed) if r["job_id"] == 1])
    for user, node in runs:
        _reset_controller(vm_bed)
        job_id = vm_bed.submit(f"-w {node.name} {wrap('sleep 3')}", user=user)
        assert job_id == 1  # the reset made Slurm hand out the same id again
        vm_bed.wait_finished(job_id)

    def stored() -> list[dict[str, Any]] | None:
        ones = [r for r in ingested_records(vm_bed) if r["job_id"] == 1]
        return ones[earlier:] if len(ones) >= earlier + len(runs) else None

    records = poll(stored, 120, "three separate records of job id 1")
    assert [(r["user"], r["node"]) for r in records] == [(user, node.name) for user, node in runs]
