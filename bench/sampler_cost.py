"""Scenario 3: agent CPU time per sample and peak RSS for one job with 8 GPUs and 4 RAPL zones, at
1 s (and, for `gpu_costs`, 10 s), with free NVML calls or an H200's measured costs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import hooks, procstats
from bench.node import Node, add_job_cgroup, build_node, simulator

GPUS = 8
INTERVAL_S = 1.0
JOB_ID = 7


def measure(
    scratch: Path,
    duration_s: float,
    fsync: bool = True,
    interval_s: float = INTERVAL_S,
    nvml_costs: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Start the job (its prolog spawns the agent), then measure the agent over `duration_s`."""
    name = f"sampler-fsync-{fsync}-{interval_s:g}s-{'costly' if nvml_costs else 'free'}"
    node = build_node(scratch / name, interval_s, gpus=GPUS, fsync=fsync, nvml_costs=nvml_costs)
    key = f"{JOB_ID}.0"
    try:
        add_job_cgroup(node, JOB_ID)
        hooks.run_hook("prolog", node, JOB_ID, gpus=GPUS)
        header = hooks.wait_header(node, key)
        pid = hooks.agent_pid(node)
        result = _observe(node, pid, key, duration_s, interval_s)
        result["gpus_resolved"] = len(header.get("gpus", []))
        hooks.run_hook("epilog", node, JOB_ID, gpus=GPUS)
        result["agent_exited_after_epilog"] = hooks.wait_exit(pid, 5.0)
    finally:
        hooks.stop_agents(node)
    return result


def _observe(node: Node, pid: int, key: str, duration_s: float, interval_s: float) -> dict[str, Any]:
    """CPU deltas over the window divided by the ticks in it; memory at its end. A GPU job's intervals
    reach the journal at each counter anchor (`nvml.counter_interval_s`), so ticks are counted by time."""
    rapl = simulator(node)
    startup_cpu_s = procstats.cpu_s(pid)
    cpu0, run0, wall0 = startup_cpu_s, procstats.runtime_s(pid), time.monotonic()
    end = wall0 + duration_s
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        rapl.step(busy=0.5, dt_s=1.0)
    cpu1, run1, wall = procstats.cpu_s(pid), procstats.runtime_s(pid), time.monotonic() - wall0
    samples = max(round(wall / interval_s), 1)
    return {
        "duration_s": duration_s,
        "interval_s": interval_s,
        "samples": samples,
        "cpu_pct_of_core": round((run1 - run0) * 100 / wall, 4),
        "cpu_ms_per_sample": round((cpu1 - cpu0) * 1000 / samples, 3),
        "schedstat_ms_per_sample": round((run1 - run0) * 1000 / samples, 3),
        "clock_tick_ms": round(1000 / procstats.CLOCK_TICKS, 1),
        "agent_cpu_ms_until_first_sample": round(startup_cpu_s * 1000, 1),
        "peak_rss_mb": round(procstats.status_kb(pid, "VmHWM") / 1024, 1),
        "rss_mb": round(procstats.status_kb(pid, "VmRSS") / 1024, 1),
        "pss_mb": round(procstats.pss_kb(pid) / 1024, 1),
    }
