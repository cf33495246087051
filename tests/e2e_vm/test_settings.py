"""Slurm settings that change what jobcarbon sees, on the VM bed (issue 13): cgroup v2 with
`ConstrainCores=no`, `PrologFlags=RunInJob` (Slurm 24.11) and a node without the memory controller.

Each fixture changes the settings on the nodes concerned, restarts only the daemons that must read them,
and puts them back after the scenario (a reboot only for the memory controller, and only when other
scenarios follow)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from testbed import vm
from testbed.host import poll
from testbed.vm.config import CGROUP_CONF_PATH, CGROUP_DEFAULTS, NODES, SLURM_CONF, SLURM_DEFAULTS

from .conftest import (
    BURN,
    VM2,
    VM3,
    later_scenarios,
    sampled_s,
    stored_records,
    truth_j,
    wait_no_agent,
    wrap,
)

pytestmark = pytest.mark.vm


@pytest.fixture
def cores_not_constrained(vm_bed: vm.VmCluster) -> Iterator[None]:
    """vm2's slurmd with ConstrainCores=no (cgroup.conf's default), put back afterwards."""
    vm_bed.set_options((VM2,), CGROUP_CONF_PATH, {"ConstrainCores": "no"})
    vm_bed.restart_daemons((VM2,))
    yield
    vm_bed.set_options((VM2,), CGROUP_CONF_PATH, {"ConstrainCores": CGROUP_DEFAULTS["ConstrainCores"]})
    vm_bed.restart_daemons((VM2,))


def test_a_one_core_job_without_constrain_cores_is_apportioned(
    vm_bed: vm.VmCluster, cores_not_constrained: None
) -> None:
    """Bug 3: cpuset.cpus.effective is the whole node, but Slurm allocated one CPU of two."""
    before = truth_j(vm_bed, VM2)
    job_id = vm_bed.submit(f"-w {VM2.name} -n1 {wrap(BURN.format(s=8))}")
    vm_bed.wait_finished(job_id)
    after = truth_j(vm_bed, VM2)
    (record,) = stored_records(vm_bed, {job_id}, 1)
    cgroup = f"/sys/fs/cgroup/system.slice/{VM2.name}_slurmstepd.scope/job_{job_id}"
    assert record["status"] == "complete", record["partial_reasons"]
    assert record["allocated_cpus"]["count"] == 1
    assert "list" not in record["allocated_cpus"] or not record["allocated_cpus"]["list"]
    assert record["energy"]["cpu"]["method"] == "apportioned"
    assert any("ConstrainCores=no" in note for note in record["notes"])
    # Alone on the node, it still never gets more than the node's package used while it ran.
    assert 0 < record["energy"]["cpu"]["joules"] < after["package-0"] - before["package-0"]
    assert vm_bed.run(VM2, f"test -d {cgroup}").returncode == 1  # Slurm removed its cgroup


@pytest.fixture
def prolog_runs_in_job(vm_bed: vm.VmCluster) -> Iterator[None]:
    """PrologFlags=Contain,RunInJob on every node (slurmctld and slurmd read it at start), put back."""
    wait_no_agent(vm_bed, VM2)  # a job's prolog can then only start one from inside the job
    vm_bed.set_options(NODES, SLURM_CONF, {"PrologFlags": "Contain,RunInJob"})
    vm_bed.restart_daemons(NODES)
    yield
    vm_bed.set_options(NODES, SLURM_CONF, {"PrologFlags": SLURM_DEFAULTS["PrologFlags"]})
    vm_bed.restart_daemons(NODES)


def test_with_prolog_flags_run_in_job_no_agent_is_started_inside_the_job(
    vm_bed: vm.VmCluster, prolog_runs_in_job: None
) -> None:
    """Bug 5: with RunInJob the prolog runs in the job's extern step; an agent it spawned would be the
    job's. The hook starts none there and says so; `jobcarbon doctor` reports the setting as an error."""
    job_id = vm_bed.submit(f"-w {VM2.name} -n1 --gres=gpu:1 {wrap('sleep 20')}")
    line = f"job {job_id}.0: this hook runs inside a job's cgroup"
    poll(lambda: vm_bed.log_has(VM2, line) or None, 180, "the prolog's RunInJob line")
    assert vm_bed.jobs(job_id)[0]["JobState"] == "RUNNING"
    cgroups = vm_bed.run(VM2, "cat /proc/$(pgrep -f 'slurm_plugin[.]node[.]agent')/cgroup 2>/dev/null")
    assert f"job_{job_id}" not in cgroups.stdout  # no agent at all, or one outside the job
    assert vm_bed.agent_pids(VM2) == []
    logged = vm_bed.run(VM2, "grep -F 'inside a job' /var/log/jobcarbon/jobcarbon.log").stdout
    assert f"job_{job_id}/step_extern" in logged
    assert "no agent started" in logged
    doctor = vm_bed.run(VM2, "jobcarbon doctor --json", timeout_s=180)
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["prolog_flags"]["status"] == "error"
    assert "RunInJob" in checks["prolog_flags"]["detail"]
    assert doctor.returncode == 1
    (job,) = vm_bed.wait_finished(job_id)
    assert job["JobState"] == "COMPLETED"  # the hooks exited 0: the job ran, the node is not drained


@pytest.fixture
def no_memory_controller(vm_bed: vm.VmCluster, request: pytest.FixtureRequest) -> Iterator[None]:
    """vm3 booted with `cgroup_disable=memory`, then as before if other scenarios follow. Its slurmd
    runs without ConstrainRAMSpace and with jobacct_gather/linux: jobacct_gather/cgroup refuses to start
    without the memory controller (slurmd 24.11: "fatal: Unable to initialize jobacct_gather")."""
    vm_bed.restart(VM3, "cgroup_disable=memory", idle=False)  # its slurmd cannot start yet
    vm_bed.set_options((VM3,), CGROUP_CONF_PATH, {"ConstrainRAMSpace": "no"})
    vm_bed.set_options((VM3,), SLURM_CONF, {"JobAcctGatherType": "jobacct_gather/linux"})
    vm_bed.restart_daemons((VM3,))
    yield
    if later_scenarios(request):
        vm_bed.restart(VM3)  # a fresh overlay: the image's settings


def test_without_the_memory_controller_a_burner_still_gets_its_cpu_time(
    vm_bed: vm.VmCluster, no_memory_controller: None
) -> None:
    """Bug 4: with no memory.current in the job's cgroup the sampler dropped the job's CPU time."""
    assert "memory" not in vm_bed.run(VM3, "cat /sys/fs/cgroup/cgroup.controllers").stdout.split()
    job_id = vm_bed.submit(f"-w {VM3.name} -n1 {wrap(BURN.format(s=10))}")
    vm_bed.wait_finished(job_id)
    (record,) = stored_records(vm_bed, {job_id}, 1)
    assert record["status"] == "complete", record["partial_reasons"]
    assert record["allocated_cpus"]["count"] == 1
    assert any("no memory controller" in note for note in record["notes"])
    assert record["energy"]["dram"]["joules"] == 0
    # Alone on the node, a busy core's share is well above the idle share of one of two CPUs (20 W).
    assert record["energy"]["cpu"]["joules"] > 35 * sampled_s(record)
