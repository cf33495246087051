"""A job's runs on a node (issue 13): requeue, and what the agent does with runs whose epilog never came."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.simnode import SimNode, wait_for

GPU_W = 100.0  # the stand-in's default power


def _gpu_node(tmp_path: Path) -> SimNode:
    from testbed.nvml_standin import CONFIG_NAME, FakeGpu, build, write_config

    library = build(tmp_path / "nvml")
    gpu = FakeGpu("GPU-00000000-0000-4000-8000-000000000001", minor=0, pci_bus_id="00000000:18:00.0")
    write_config(library.parent / CONFIG_NAME, [gpu])
    nvml = f"nvml:\n  library: {library}\n  counter_interval_s: 0.3\n"
    return SimNode(tmp_path / "node", interval_s=0.1, extra_config=nvml)


def _sampled(node: SimNode) -> list[str]:
    """The runs the agent samples (none when it has exited for want of jobs)."""
    from slurm_plugin.node.agent_client import request

    try:
        return list(request(node.spool / "agent.sock", {"op": "status"}, 1.0)["jobs"])
    except OSError:
        return []


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _span_s(record: dict[str, Any]) -> float:
    rows = record["timeline"]["rows"]
    return float(rows[-1][1] - rows[0][0])


def test_requeue_epilog_with_the_next_restart_count_ends_run_0_and_run_1_gets_its_whole_gpu(
    tmp_path: Path,
) -> None:
    node = _gpu_node(tmp_path)
    try:
        node.hook("prolog", 90, SLURM_JOB_RESTART_COUNT="0", SLURM_JOB_GPUS="0")
        wait_for(lambda: node.intervals(90, 0) >= 3, what="run 0 sampled")
        # Slurm increments the restart count before run 0's epilog (seen on the 22.05 test bed).
        ended_at = time.time()
        node.hook("epilog", 90, SLURM_JOB_RESTART_COUNT="1", SLURM_JOB_GPUS="0")
        run0 = node.record(90, 0)
        assert run0 is not None
        assert "90.0" not in _sampled(node)
        node.hook("prolog", 90, SLURM_JOB_RESTART_COUNT="1", SLURM_JOB_GPUS="0")
        wait_for(lambda: node.intervals(90, 1) >= 5, what="run 1 sampled")
        assert _sampled(node) == ["90.1"]
        node.hook("epilog", 90, SLURM_JOB_RESTART_COUNT="1", SLURM_JOB_GPUS="0")
        run1 = node.record(90, 1)
    finally:
        node.stop_agent()
    assert run1 is not None
    assert (run0["restart_count"], run1["restart_count"]) == (0, 1)
    assert run0["status"] == run1["status"] == "complete"
    assert _epoch(run0["end"]) <= ended_at + 1.0  # nothing sampled after the run ended
    for run in (run0, run1):
        gpu = run["energy"]["gpu"]
        assert gpu["method"] == "measured"  # not halved and flagged apportioned by a ghost run 0
        assert gpu["joules"] == pytest.approx(GPU_W * _span_s(run), rel=0.02)


def test_a_new_runs_prolog_ends_an_earlier_run_whose_epilog_never_came(tmp_path: Path) -> None:
    node = SimNode(tmp_path, interval_s=0.1)
    try:
        node.job_cgroup(91)
        node.hook("prolog", 91, SLURM_JOB_RESTART_COUNT="0")
        wait_for(lambda: node.intervals(91, 0) >= 2, what="run 0 sampled")
        started = time.time()
        node.hook("prolog", 91, SLURM_JOB_RESTART_COUNT="1")
        run0 = wait_for(lambda: node.record(91, 0), what="run 0's record")
        assert _sampled(node) == ["91.1"]
        node.hook("epilog", 91, SLURM_JOB_RESTART_COUNT="1")
        run1 = node.record(91, 1)
    finally:
        node.stop_agent()
    assert run1 is not None
    assert started - 1.0 <= _epoch(run0["end"]) <= started + 1.0
    assert run0["status"] == run1["status"] == "complete"


def test_without_an_agent_the_epilog_finalises_every_run_of_its_job(tmp_path: Path) -> None:
    node = SimNode(tmp_path, interval_s=0.1)
    node.job_cgroup(92)
    node.hook("prolog", 92, SLURM_JOB_RESTART_COUNT="0")
    wait_for(lambda: node.intervals(92, 0) >= 2, what="run 0 sampled")
    pid = node.agent_pid()
    assert pid is not None
    os.kill(pid, 9)
    wait_for(lambda: node.agent_pid() is None, what="agent gone")
    node.hook("epilog", 92, SLURM_JOB_RESTART_COUNT="1")
    run0 = node.record(92, 0)
    node.stop_agent()
    assert run0 is not None
    assert run0["status"] == "partial"
    assert not (node.spool / "jobs" / "92.0").exists()


def test_a_failed_nvml_start_up_is_retried_and_the_gap_noted(tmp_path: Path) -> None:
    from testbed.nvml_standin import CONFIG_NAME, DRIVER_NOT_LOADED, FakeGpu, build, write_config

    library = build(tmp_path / "nvml")
    standin = library.parent / CONFIG_NAME
    gpu = FakeGpu("GPU-00000000-0000-4000-8000-000000000002", minor=0, pci_bus_id="00000000:18:00.0")
    write_config(standin, [gpu], init_ret=DRIVER_NOT_LOADED)  # the driver is not loaded yet
    nvml = f"nvml:\n  library: {library}\n  counter_interval_s: 0.3\n  retry_interval_s: 0.2\n"
    node = SimNode(tmp_path / "node", interval_s=0.1, extra_config=nvml)
    try:
        node.hook("prolog", 95, SLURM_JOB_GPUS="0")
        wait_for(lambda: node.intervals(95) >= 5, what="samples without NVML")
        write_config(standin, [gpu])  # the driver is up: the next retry opens NVML
        late = wait_for(lambda: [e for e in node.journal(95) if e["type"] == "gpus"], what="late GPUs")
        seen = node.intervals(95)
        wait_for(lambda: node.intervals(95) >= seen + 8, what="GPU samples")
        node.hook("epilog", 95, SLURM_JOB_GPUS="0")
        record = node.record(95)
    finally:
        node.stop_agent()
    assert record is not None
    assert [g["uuid"] for g in late[0]["gpus"]] == [g["uuid"] for g in record["gpus"]] == [gpu.uuid]
    rows = record["timeline"]["rows"]
    measured_s = sum(t1 - t0 for t0, t1, _cpu, _dram, gpu_j in rows if gpu_j is not None)
    unmeasured_s = sum(t1 - t0 for t0, t1, _cpu, _dram, gpu_j in rows if gpu_j is None)
    assert unmeasured_s >= 0.4  # the five samples before NVML opened
    assert record["energy"]["gpu"]["method"] == "measured"
    assert record["energy"]["gpu"]["joules"] == pytest.approx(GPU_W * measured_s, rel=0.02)
    assert any("NVML is unavailable" in note for note in record["notes"])
    assert any("NVML opened" in note and "not measured" in note for note in record["notes"])


def test_nvml_start_up_retries_back_off_from_the_retry_interval_to_twenty_times_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slurm_plugin import config as config_module
    from slurm_plugin.node.sampler import NodeSampler
    from slurm_plugin.sensors import SensorUnavailable, Status
    from slurm_plugin.sensors.nvml import NvmlSensor

    driver = {"loaded": False}

    def open_nvml(settings: Any) -> object:  # in this process: never load a library the sensor tests load
        if not driver["loaded"]:
            raise SensorUnavailable("nvml: initialisation failed: Driver Not Loaded", Status.ERROR)
        return object()

    monkeypatch.setattr(NvmlSensor, "open", staticmethod(open_nvml))
    node = SimNode(tmp_path, extra_config="nvml:\n  retry_interval_s: 30\n")
    lines: list[str] = []
    sampler = NodeSampler(config_module.load(node.config), lambda level, text: lines.append(text))
    waits = []
    for now in (1000.0, 1029.0, 1030.0, 1089.0, 1090.0, 1210.0, 1450.0, 1930.0, 2530.0, 3130.0):
        tried = len(lines)
        assert sampler.nvml.open(now) is None
        if len(lines) > tried:  # a try was due, failed and was logged
            waits.append(sampler.nvml.retry_at - now)
    assert waits == [30, 60, 120, 240, 480, 600, 600, 600]  # not tried at 1029 and 1089
    assert "initialisation failed" in lines[0]
    driver["loaded"] = True
    assert sampler.nvml.open(3700.0) is None  # not due before 3730
    assert sampler.nvml.open(3730.0) is not None
    assert "NVML opened after an earlier failure" in lines[-1]
