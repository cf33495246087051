"""GPU utilisation and memory through the agent (real pynvml on the NVML stand-in): a busy and an idle
GPU of one job, their compact timeline, per-GPU summary and the idle GPU's energy (the waste rule)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from slurm_plugin.gpu_use import expand
from tests.simnode import SimNode, wait_for

BUSY, IDLE = "GPU-00000000-0000-4000-8000-0000000000b1", "GPU-00000000-0000-4000-8000-0000000000a0"
BUSY_W, IDLE_W = 300.0, 60.0


def _node(tmp_path: Path) -> SimNode:
    from testbed.nvml_standin import CONFIG_NAME, FakeGpu, build, write_config

    library = build(tmp_path / "nvml")
    gpus = [
        FakeGpu(BUSY, 0, "00000000:18:00.0", power_mw=int(BUSY_W * 1000), util_pct=97, mem_used_mib=20480),
        FakeGpu(IDLE, 1, "00000000:38:00.0", power_mw=int(IDLE_W * 1000), util_pct=0, mem_used_mib=0),
    ]
    write_config(library.parent / CONFIG_NAME, gpus)
    nvml = f"nvml:\n  library: {library}\n  counter_interval_s: 0.3\n"
    return SimNode(tmp_path / "node", interval_s=0.1, extra_config=nvml)


def test_a_busy_and_an_idle_gpu_get_their_utilisation_memory_and_idle_energy(tmp_path: Path) -> None:
    node = _node(tmp_path)
    try:
        node.job_cgroup(95)
        node.hook("prolog", 95, SLURM_JOB_GPUS="0,1")
        wait_for(lambda: node.intervals(95, 0) >= 6, what="job sampled")
        node.hook("epilog", 95, SLURM_JOB_GPUS="0,1")
        record = node.record(95, 0)
    finally:
        node.stop_agent()
    assert record is not None
    schema = json.loads((Path(__file__).parents[2] / "slurm_plugin" / "record_schema.json").read_text())
    jsonschema.validate(record, schema)
    use = record["efficiency"]
    busy, idle = use["gpus"][BUSY], use["gpus"][IDLE]
    assert (busy["util_mean_pct"], busy["util_max_pct"], busy["idle_fraction"]) == (97.0, 97, 0.0)
    assert busy["mem_peak_bytes"] == 20480 * 2**20
    assert busy["idle_j"] == 0.0
    assert (idle["util_mean_pct"], idle["idle_fraction"], idle["mem_peak_bytes"]) == (0.0, 1.0, 0)
    devices = record["energy"]["gpu"]["devices"]
    assert idle["idle_j"] == pytest.approx(devices[IDLE]["joules"], rel=1e-3)
    assert use["idle_gpu_j"] == pytest.approx(idle["idle_j"], rel=1e-6)
    assert use["gpu_idle_util_pct"] == 5.0
    timeline = record["timeline"]
    rows = len(timeline["rows"])
    busy_util = expand(timeline["gpu_use"][BUSY]["util_pct"])
    assert len(busy_util) == rows
    assert set(busy_util) <= {97, None}
    assert expand(timeline["gpu_use"][IDLE]["mem_mib"]) == [0] * rows
