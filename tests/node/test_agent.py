"""The node agent with several jobs: shared ticks, attribution, restart and adoption."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.simnode import NODE, SimNode, wait_for


@pytest.fixture
def node(tmp_path: Path):
    sim = SimNode(tmp_path, interval_s=0.1)
    yield sim
    sim.stop_agent()


def _run_two_jobs(node: SimNode) -> tuple[dict, dict, float, float]:
    node.set_rapl(1000.0, 100.0)
    node.job_cgroup(21, uid=1000, cpus="0", mem=4 * 2**30)
    node.job_cgroup(22, uid=1001, cpus="1", mem=1 * 2**30)
    node.hook("prolog", 21)
    node.hook("prolog", 22, SLURM_JOB_UID="1001")
    wait_for(lambda: node.intervals(22) >= 1, what="second job sampled")
    package, dram, burner_cpu = 1000.0, 100.0, 0.0
    for _ in range(10):
        seen = node.intervals(22)
        package, dram, burner_cpu = package + 50.0, dram + 5.0, burner_cpu + 0.09
        node.set_rapl(package, dram)
        node.job_cgroup(21, uid=1000, cpus="0", cpu_s=burner_cpu, mem=4 * 2**30)
        wait_for(lambda s=seen: node.intervals(22) > s, what="next interval")
    node.hook("epilog", 21)
    node.hook("epilog", 22, SLURM_JOB_UID="1001")
    burner, sleeper = node.record(21), node.record(22)
    assert burner is not None
    assert sleeper is not None
    return burner, sleeper, package - 1000.0, dram - 100.0


def test_burner_gets_more_cpu_energy_and_jobs_never_exceed_the_node(node: SimNode) -> None:
    burner, sleeper, package_j, dram_j = _run_two_jobs(node)
    burner_cpu, sleeper_cpu = burner["energy"]["cpu"]["joules"], sleeper["energy"]["cpu"]["joules"]
    assert burner_cpu > 2 * sleeper_cpu
    assert burner_cpu + sleeper_cpu <= package_j + 1e-6
    burner_dram, sleeper_dram = burner["energy"]["dram"]["joules"], sleeper["energy"]["dram"]["joules"]
    assert burner_dram + sleeper_dram <= dram_j + 1e-6
    assert burner_dram == pytest.approx(4 * sleeper_dram, rel=0.05)
    assert burner["energy"]["cpu"]["method"] == "apportioned"
    assert burner["status"] == sleeper["status"] == "complete"


def test_records_validate_against_the_schema(node: SimNode) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import json

    schema = json.loads((Path(__file__).parents[2] / "slurm_plugin" / "record_schema.json").read_text())
    for record in _run_two_jobs(node)[:2]:
        jsonschema.Draft202012Validator(schema).validate(record)


def test_killed_agent_is_restarted_by_the_next_prolog_and_resumes_jobs(node: SimNode) -> None:
    node.job_cgroup(31)
    node.hook("prolog", 31)
    wait_for(lambda: node.intervals(31) >= 1, what="first job sampled")
    first = node.agent_pid()
    assert first is not None
    os.kill(first, 9)
    wait_for(lambda: node.agent_pid() is None, what="agent gone")
    node.hook("prolog", 32)
    wait_for(lambda: node.agent_pid() not in (None, first), what="new agent")
    seen = node.intervals(31)
    wait_for(lambda: node.intervals(31) > seen, what="job 31 resumed")
    node.hook("epilog", 31)
    node.hook("epilog", 32)
    resumed, fresh = node.record(31), node.record(32)
    assert resumed is not None
    assert fresh is not None
    assert resumed["status"] == "partial"
    assert any("sampler restarted" in reason for reason in resumed["partial_reasons"])
    assert fresh["status"] == "complete"


def test_concurrent_prologs_share_one_agent(node: SimNode) -> None:
    threads = [threading.Thread(target=node.hook, args=("prolog", 40 + i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: all(node.intervals(40 + i) >= 1 for i in range(8)), what="all jobs sampled")
    from slurm_plugin.node.agent_client import request

    status = request(node.spool / "agent.sock", {"op": "status"}, 2.0)
    assert status["jobs"] == sorted(f"{40 + i}.0" for i in range(8))
    for i in range(8):
        node.hook("epilog", 40 + i)
    assert all(node.record(40 + i) for i in range(8))
    wait_for(lambda: node.agent_pid() is None, what="agent exits when no job is left")
    assert not list((node.spool / "jobs").iterdir())


def test_spawned_agent_starts_sampling_without_waiting_an_interval(tmp_path: Path) -> None:
    node = SimNode(tmp_path, interval_s=300)
    try:
        node.hook("prolog", 50)
        header = wait_for(lambda: node.journal(50), timeout_s=10, what="journal header")[0]
        assert header["type"] == "header"
        assert header["first_sample"] >= header["start"]
    finally:
        node.stop_agent()


def test_gpu_job_energy_follows_programmed_power_across_a_counter_reset(tmp_path: Path) -> None:
    from dataclasses import replace

    from testbed.nvml_standin import CONFIG_NAME, FakeGpu, build, write_config

    library = build(tmp_path / "nvml")
    gpu = FakeGpu("GPU-00000000-0000-4000-8000-0000000000aa", minor=0, pci_bus_id="00000000:17:00.0")
    write_config(library.parent / CONFIG_NAME, [replace(gpu, power_mw=250_000)])
    node = SimNode(tmp_path / "node", interval_s=0.1, extra_config=f"nvml:\n  library: {library}\n")
    try:
        node.hook("prolog", 60, SLURM_JOB_GPUS="0")
        wait_for(lambda: node.intervals(60) >= 3, what="GPU samples")
        write_config(library.parent / CONFIG_NAME, [replace(gpu, power_mw=250_000)])  # driver reload
        seen = node.intervals(60)
        wait_for(lambda: node.intervals(60) >= seen + 3, what="samples after the reset")
        node.hook("epilog", 60, SLURM_JOB_GPUS="0")
    finally:
        node.stop_agent()
    record = node.record(60)
    assert record is not None
    assert record["gpus"][0]["uuid"] == gpu.uuid
    rows = record["timeline"]["rows"]
    device = record["energy"]["gpu"]["devices"][gpu.uuid]
    assert device["joules"] == pytest.approx(250 * (rows[-1][1] - rows[0][0]), rel=0.02)
    assert "integrated" in device["by_method"]
    assert any("energy counter reset" in note for note in record["notes"])


def test_running_jobs_publish_snapshots_that_the_final_record_replaces(tmp_path: Path) -> None:
    import json

    node = SimNode(tmp_path, interval_s=0.1)
    text = node.config.read_text()
    node.config.write_text(text.replace("sampler:\n", "sampler:\n  snapshot_interval_s: 0.3\n"))
    running = node.outbox / "running" / f"sim_70_0_{NODE}.json"
    try:
        node.job_cgroup(70)
        node.hook("prolog", 70)
        wait_for(running.exists, what="a running snapshot")
        snapshot = json.loads(running.read_text())
        assert snapshot["status"] == "running"
        assert snapshot["coverage"]["samples"] >= 1
        node.hook("epilog", 70)
    finally:
        node.stop_agent()
    assert node.record(70)["status"] == "complete"
    assert not running.exists()


def test_a_job_from_before_a_reboot_is_closed_as_partial(node: SimNode) -> None:
    import json

    node.job_cgroup(80)
    node.hook("prolog", 80)
    wait_for(lambda: node.intervals(80) >= 2, what="samples")
    node.stop_agent()
    job_file = node.spool / "jobs" / "80.0" / "job.json"
    data = json.loads(job_file.read_text())
    job_file.write_text(json.dumps({**data, "boot_id": "00000000-0000-0000-0000-000000000000"}))
    node.hook("prolog", 81)  # the first job after the reboot starts a new agent
    record = wait_for(lambda: node.record(80), what="the pre-reboot job's record")
    assert record["status"] == "partial"
    assert "the node rebooted during the job" in record["partial_reasons"]
    assert record["coverage"]["samples"] >= 2
    node.hook("epilog", 81)
