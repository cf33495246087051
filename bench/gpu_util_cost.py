"""What GPU utilisation costs: `python3 -m bench.gpu_util_cost [--calls 4000]`.

1. **Per GPU per tick**: the sampler's added reads, `NvmlSensor.use` (nvmlDeviceGetUtilizationRates and
   nvmlDeviceGetMemoryInfo through the real pynvml), on the NVML stand-in with 8 GPUs, with free calls
   and with the modelled costs of `nvml_standin.H200_COSTS_US`; wall and this thread's CPU per call,
   next to the power reading every tick already makes. Target: ≤ 0.1 ms per GPU per tick.
2. **Record size**: a week-long job at 10 s (60,480 intervals, built by `record.build` from a journal,
   written as the outbox writes it, indented, and zlib-compressed as the store keeps it), without
   utilisation (before this change) and with it, for 1, 4 and 8 GPUs: busy (utilisation varying
   90–100 % every tick, memory in steps every 10 minutes, as a caching allocator holds it), idle, and,
   the worst case, busy with memory changing every tick. Target: ≤ 1.5× today's size.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from slurm_plugin import config, record
from slurm_plugin.node.journal import Journal
from testbed import nvml_standin

GPUS = 8
TARGET_MS = 0.1
TARGET_RATIO = 1.5
WEEK_ROWS = 7 * 86400 // 10
START = 1767225600.0


def _gpus() -> list[nvml_standin.FakeGpu]:
    return [
        nvml_standin.FakeGpu(
            uuid=f"GPU-{i:08x}-0000-4000-8000-{i:012x}",
            minor=i,
            pci_bus_id=f"00000000:{0x18 + i:02X}:00.0",
            util_pct=90 + i,
            mem_used_mib=20_000 + i,
        )
        for i in range(GPUS)
    ]


def _per_call(calls: int, work: Any, uuids: list[str]) -> dict[str, float]:
    """Wall and thread-CPU ms per call of `work(uuid)`, cycling over the GPUs."""
    walls, cpus = [], []
    for n in range(calls):
        uuid = uuids[n % len(uuids)]
        wall, cpu = time.perf_counter(), time.thread_time()
        work(uuid)
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    walls.sort()
    return {
        "wall_p50_ms": statistics.median(walls) * 1e3,
        "wall_p95_ms": walls[int(0.95 * len(walls))] * 1e3,
        "cpu_mean_ms": statistics.fmean(cpus) * 1e3,
    }


def call_costs(scratch: Path, calls: int) -> dict[str, Any]:
    """`use` and `power_mw` per GPU, free and with modelled costs; the stand-in re-reads its config."""
    from slurm_plugin.sensors.nvml import NvmlSensor

    library = nvml_standin.build(scratch / "nvml")
    conf = library.parent / nvml_standin.CONFIG_NAME
    gpus = _gpus()
    results: dict[str, Any] = {}
    sensor = None
    for name, costs in (("free", None), ("h200_model", nvml_standin.H200_COSTS_US)):
        nvml_standin.write_config(conf, gpus, costs=costs)
        if sensor is None:
            sensor = NvmlSensor.open(config.Nvml(library=library))
        uuids = [device.uuid for device in sensor.devices()]
        _per_call(200, sensor.use, uuids)  # warm-up: handles looked up, the config re-read
        results[name] = {
            "use": _per_call(calls, sensor.use, uuids),
            "power": _per_call(calls, sensor.power_mw, uuids),
        }
    if sensor is not None:
        sensor.close()
    return results


def _reading(kind: str, i: int, rng: random.Random) -> list[int]:
    """[util %, memory MiB] of one GPU at tick `i` (`record_sizes`' cases)."""
    if kind == "idle":
        return [0, 0]
    memory = 30_000 + rng.randint(0, 2000) if kind == "jumpy" else 30_000 + 512 * (i // 60 % 4)
    return [rng.randint(90, 100), memory]


def _journal(gpus: int, kind: str | None, rng: random.Random) -> Journal:
    uuids = [f"GPU-{i:08x}-0000-4000-8000-{i:012x}" for i in range(gpus)]
    job = {"cluster": "bench", "job_id": 1, "restart_count": 0, "node": "node001", "user": "bench"}
    job |= {"uid": 1000, "gid": 1000, "account": "bench", "partition": "gpu"}
    described = [{"uuid": u, "model": "NVIDIA H100", "pci_bus_id": "00000000:07:00.0"} for u in uuids]
    header = {"type": "header", "version": 1, "job": job, "start": START, "gpus": described, "node_info": {}}
    header["gpu_idle_util_pct"] = 5.0
    intervals = []
    for i in range(WEEK_ROWS):
        entry: dict[str, Any] = {
            "type": "interval",
            "t0": START + 10 * i,
            "t1": START + 10 * (i + 1),
            "cpu_s": rng.uniform(100, 160),
            "cpus": 16,
            "mem_b": 1 << 34,
            "cpu": [rng.uniform(500, 1500), "apportioned"],
            "dram": [rng.uniform(20, 60), "apportioned"],
            "gpu": {u: [rng.uniform(2000, 7000), "measured"] for u in uuids},
        }
        if i == 0:
            entry["cpuset"] = list(range(16))
        if kind is not None:
            entry["gpu_use"] = {u: _reading(kind, i, rng) for u in uuids}
        intervals.append(entry)
    return Journal(header, intervals)


def record_sizes() -> list[dict[str, Any]]:
    """Bytes of the week's record as the outbox writes it and as the store keeps it, per case."""
    rows = []
    end = START + 10 * WEEK_ROWS
    for gpus in (1, 4, 8):
        before = _sizes(record.build(_journal(gpus, None, random.Random(1)), end, []))
        for kind in ("busy", "idle", "jumpy"):
            after = _sizes(record.build(_journal(gpus, kind, random.Random(1)), end, []))
            rows.append(
                {
                    "gpus": gpus,
                    "gpu_use": kind,
                    "outbox_before_b": before[0],
                    "outbox_after_b": after[0],
                    "outbox_ratio": after[0] / before[0],
                    "stored_before_b": before[1],
                    "stored_after_b": after[1],
                    "stored_ratio": after[1] / before[1],
                }
            )
    return rows


def _sizes(document: dict[str, Any]) -> tuple[int, int]:
    raw = json.dumps(document, indent=1).encode() + b"\n"  # as outbox.write writes it
    return len(raw), len(zlib.compress(raw, 6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobcarbon-gpu-util-") as scratch:
        costs = call_costs(Path(scratch), args.calls)
    for name, figures in costs.items():
        use, power = figures["use"], figures["power"]
        verdict = "meets" if use["wall_p50_ms"] <= TARGET_MS else "misses"
        print(
            f"{name:>10}: utilisation + memory per GPU per tick p50 {use['wall_p50_ms']:.4f} ms "
            f"(p95 {use['wall_p95_ms']:.4f}, CPU {use['cpu_mean_ms']:.4f}) [{verdict} ≤ {TARGET_MS} ms]; "
            f"power read p50 {power['wall_p50_ms']:.4f} ms"
        )
    for row in record_sizes():
        verdict = "meets" if row["outbox_ratio"] <= TARGET_RATIO else "misses"
        print(
            f"week at 10 s, {row['gpus']} GPU(s) {row['gpu_use']:>5}: "
            f"outbox {row['outbox_before_b'] / 1e6:.2f} → {row['outbox_after_b'] / 1e6:.2f} MB "
            f"({row['outbox_ratio']:.2f}x, {verdict} ≤ {TARGET_RATIO}x); "
            f"stored {row['stored_before_b'] / 1e6:.2f} → {row['stored_after_b'] / 1e6:.2f} MB "
            f"({row['stored_ratio']:.2f}x)"
        )


if __name__ == "__main__":
    main()
