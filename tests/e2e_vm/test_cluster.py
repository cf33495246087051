"""jobcarbon end to end on a three-node Slurm 24.11 with systemd and cgroup v2, in VMs (testbed/vm/).

vm1 is the controller; vm2 and vm3 each have two CPUs and two fake GPUs (100 W and 200 W, the NVML
stand-in), RAPL following each VM's own CPU load. Records go from the nodes' outboxes to the bed's
database on the host (`jobcarbon ingest`), where `jobcarbon show` merges a job's parts.
"""

from __future__ import annotations

import pytest

from slurm_plugin import outbox
from testbed import vm

from .conftest import BURN, VM2, assert_gpu_energy_is_power_times_time, stored_records, summary, truth_j, wrap

pytestmark = pytest.mark.vm


def test_a_two_node_job_is_merged_once_with_both_nodes_energy(vm_bed: vm.VmCluster) -> None:
    script = "cat /proc/self/cgroup; srun sleep 8"
    job_id = vm_bed.submit(f"-N2 --ntasks-per-node=1 --gres=gpu:1 -A physics {wrap(script)}")
    (job,) = vm_bed.wait_finished(job_id)
    assert (job["JobState"], job["NodeList"]) == ("COMPLETED", "vm[2-3]")
    # Slurm's cgroup/v2 layout under systemd: the batch step inside slurmstepd.scope (Debian's build,
    # made for several slurmd per host, prefixes the node name).
    batch_cgroup = vm_bed.run(VM2, f"cat /tmp/slurm-{job_id}.out").stdout.split()[0]
    assert batch_cgroup == f"0::/system.slice/vm2_slurmstepd.scope/job_{job_id}/step_batch/user/task_0"
    records = stored_records(vm_bed, {job_id}, 2)
    assert [(r["node"], r["status"], r["user"]) for r in records] == [
        ("vm2", "complete", "jcalice"),
        ("vm3", "complete", "jcalice"),
    ]
    for record in records:
        assert_gpu_energy_is_power_times_time(record)
    found = summary(vm_bed, str(job_id))
    assert (found["nodes"], found["user"], found["account"]) == (["vm2", "vm3"], "jcalice", "physics")
    parts_j = sum(record["energy"]["total_joules"] for record in records)
    assert found["energy"]["total_j"] == pytest.approx(parts_j, rel=1e-3)
    assert len(found["energy"]["gpus"][0]["devices"]) == 2
    # Delivered again (a node retrying), the parts are recognised: the job is unchanged.
    for record in records:
        outbox.write(vm_bed.outbox, record, fsync=False)
    again = vm_bed.jobcarbon("ingest")
    assert "0 stored, 2 duplicates" in again.stdout, again.stdout + again.stderr
    assert summary(vm_bed, str(job_id)) == found
    shown = vm_bed.jobcarbon(str(job_id))
    assert "nodes       2: vm2, vm3" in shown.stdout, shown.stdout + shown.stderr


def test_each_task_of_a_job_array_gets_its_own_record(vm_bed: vm.VmCluster) -> None:
    array_id = vm_bed.submit(f"--array=0-2 --gres=gpu:1 {wrap('sleep 4')}")
    tasks = vm_bed.wait_finished(array_id)
    assert sorted(task["ArrayTaskId"] for task in tasks) == ["0", "1", "2"]
    assert {task["JobState"] for task in tasks} == {"COMPLETED"}
    task_ids = {int(task["JobId"]) for task in tasks}
    records = stored_records(vm_bed, task_ids, 3)
    assert len(records) == 3
    assert {record["job_id"] for record in records} == task_ids
    for record in records:
        assert record["status"] == "complete"
        assert len(record["gpus"]) == 1
        assert_gpu_energy_is_power_times_time(record)
        if record["job_id"] == array_id:
            continue  # the array's own id shows the array's summary (tests/e2e/test_job_facts.py)
        found = summary(vm_bed, str(record["job_id"]))
        assert (found["job_id"], found["nodes"]) == (record["job_id"], [record["node"]])


HET_SCRIPT = """#!/bin/sh
#SBATCH -n1 --gres=gpu:1 -w vm2
#SBATCH hetjob
#SBATCH -n1 --gres=gpu:2 -w vm3
srun --het-group=0,1 sleep 6
"""


def test_each_component_of_a_heterogeneous_job_is_measured_on_its_node(vm_bed: vm.VmCluster) -> None:
    het_id = vm_bed.submit("", script=HET_SCRIPT)
    components = sorted(vm_bed.wait_finished(het_id), key=lambda c: int(c["HetJobOffset"]))
    assert [(c["HetJobOffset"], c["NodeList"], c["JobState"]) for c in components] == [
        ("0", "vm2", "COMPLETED"),
        ("1", "vm3", "COMPLETED"),
    ]
    ids = [int(c["JobId"]) for c in components]
    records = stored_records(vm_bed, set(ids), 2)
    assert [(r["job_id"], r["node"], len(r["gpus"])) for r in records] == [
        (ids[0], "vm2", 1),
        (ids[1], "vm3", 2),
    ]
    for record in records:
        assert record["status"] == "complete"
        assert_gpu_energy_is_power_times_time(record)


def test_a_burner_and_a_sleeper_sharing_a_node(vm_bed: vm.VmCluster) -> None:
    before = truth_j(vm_bed, VM2)
    common = f"-w {VM2.name} -n1 --gres=gpu:1 -A physics"
    # 20 s: under emulation on a loaded host the agent a prolog starts takes up to ~10 s to take its
    # first sample, and what a job burns before then is not measured (only coverage shows it).
    burner = vm_bed.submit(f"{common} {wrap(BURN.format(s=20))}", user="jcalice")
    sleeper = vm_bed.submit(f"{common} {wrap('sleep 20')}", user="jcbob")
    for job_id in (burner, sleeper):
        assert [job["JobState"] for job in vm_bed.wait_finished(job_id)] == ["COMPLETED"]
    after = truth_j(vm_bed, VM2)
    burned, slept = stored_records(vm_bed, {burner, sleeper}, 2)
    assert (burned["user"], slept["user"]) == ("jcalice", "jcbob")
    assert burned["energy"]["cpu"]["joules"] > 1.5 * slept["energy"]["cpu"]["joules"] > 0
    for record in (burned, slept):
        assert (record["status"], record["account"], record["allocated_cpus"]["count"]) == (
            "complete",
            "physics",
            1,
        )
        assert_gpu_energy_is_power_times_time(record)
    assert {burned["gpus"][0]["uuid"], slept["gpus"][0]["uuid"]} == {
        f"GPU-00000000-0000-4000-8000-0000000{VM2.index:02d}{i:03d}" for i in range(2)
    }
    truth = {channel: after[channel] - before[channel] for channel in after}
    assert burned["energy"]["cpu"]["joules"] + slept["energy"]["cpu"]["joules"] <= truth["package-0"]
    assert burned["energy"]["dram"]["joules"] + slept["energy"]["dram"]["joules"] <= truth["dram-0"]
