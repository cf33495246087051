"""Scenario 3: agent CPU time per sample and peak RSS for one job with 8 GPUs and 4 RAPL zones."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import hooks, procstats
from bench.node import Node, add_job_cgroup, build_node, simulator

GPUS = 8
INTERVAL_S = 1.0
JOB_ID = 7


def measure(scratch: Path, duration_s: float, fsync: bool = True) -> dict[str, Any]:
    """Start the job (its prolog spawns the agent), then measure the agent over `duration_s`."""
    node = build_node(scratch / f"sampler-fsync-{fsync}", INTERVAL_S, gpus=GPUS, fsync=fsync)
    key = f"{JOB_ID}.0"
    try:
        add_job_cgroup(node, JOB_ID)
        hooks.run_hook("prolog", node, JOB_ID, gpus=GPUS)
        header = hooks.wait_header(node, key)
        pid = hooks.agent_pid(node)
        result = _observe(node, pid, key, duration_s)
        result["gpus_resolved"] = len(header.get("gpus", []))
        hooks.run_hook("epilog", node, JOB_ID, gpus=GPUS)
        result["agent_exited_after_epilog"] = hooks.wait_exit(pid, 5.0)
    finally:
        hooks.stop_agents(node)
    return result


def _observe(node: Node, pid: int, key: str, duration_s: float) -> dict[str, Any]:
    """CPU deltas over the window divided by the samples journaled in it; memory at its end."""
    rapl = simulator(node)
    startup_cpu_s = procstats.cpu_s(pid)
    cpu0, run0, lines0 = startup_cpu_s, procstats.runtime_s(pid), hooks.interval_lines(node, key)
    end = time.monotonic() + duration_s
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(INTERVAL_S, left))
        rapl.step(busy=0.5, dt_s=INTERVAL_S)
    cpu1, run1, lines1 = procstats.cpu_s(pid), procstats.runtime_s(pid), hooks.interval_lines(node, key)
    samples = max(lines1 - lines0, 1)
    return {
        "duration_s": duration_s,
        "samples": lines1 - lines0,
        "cpu_ms_per_sample": round((cpu1 - cpu0) * 1000 / samples, 3),
        "schedstat_ms_per_sample": round((run1 - run0) * 1000 / samples, 3),
        "clock_tick_ms": round(1000 / procstats.CLOCK_TICKS, 1),
        "agent_cpu_ms_until_first_sample": round(startup_cpu_s * 1000, 1),
        "peak_rss_mb": round(procstats.status_kb(pid, "VmHWM") / 1024, 1),
        "rss_mb": round(procstats.status_kb(pid, "VmRSS") / 1024, 1),
        "pss_mb": round(procstats.pss_kb(pid) / 1024, 1),
    }
