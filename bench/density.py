"""Scenario 4: 64 concurrent jobs on one node at the default interval; the agent's CPU share and PSS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import hooks, procstats
from bench.node import Node, build_node, simulator

JOBS = 64
INTERVAL_S = 10.0
FIRST_JOB = 5000
SLURMSTEPD_PSS_MB = 5.0  # Slurm's own per-job daemons, for scale (the figure)


def measure(scratch: Path, duration_s: float) -> dict[str, Any]:
    """Start 64 jobs (the first prolog spawns the agent), observe, then end them all."""
    node = build_node(scratch / "density", INTERVAL_S)
    job_ids = [FIRST_JOB + index for index in range(JOBS)]
    try:
        hooks.start_jobs(node, job_ids, timeout_s=INTERVAL_S * 3)
        pid = hooks.agent_pid(node)
        spares = _wait_for_spare_agents(node, pid)
        result = {**_observe(node, pid, duration_s), **spares}
        epilog_s = [hooks.run_hook("epilog", node, job_id) for job_id in job_ids]
        result["epilog_total_s"] = round(sum(epilog_s), 2)
        result["records_written"] = sum(1 for _ in node.outbox.glob("*.json"))
        result["agent_exited_after_epilog"] = hooks.wait_exit(pid, 5.0)
    finally:
        hooks.stop_agents(node)
    return result


def _wait_for_spare_agents(node: Node, pid: int) -> dict[str, Any]:
    """Prologs that ran before the first agent listened start spare agents; they wait for the agent
    lock (agent.LOCK_WAIT_S) and exit. Let them go before measuring, and count them."""
    spares = [
        other for other in procstats.pids_with_env("JOBCARBON_CONFIG", str(node.config)) if other != pid
    ]
    gone = all(hooks.wait_exit(other, 15.0) for other in spares)
    started = node.log_file.read_text().count("started the node agent")
    return {"prologs_that_spawned_an_agent": started, "spare_agents_exited": gone}


def _observe(node: Node, pid: int, duration_s: float) -> dict[str, Any]:
    """CPU share of every process started with this node's config (the agent) and their PSS."""
    rapl = simulator(node)
    pids = procstats.pids_with_env("JOBCARBON_CONFIG", str(node.config))
    probe = f"{FIRST_JOB}.0"
    cpu0, run0, ticks0 = _cpu(pids), _runtime(pids), hooks.interval_lines(node, probe)
    wall0 = time.monotonic()
    end = wall0 + duration_s
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        rapl.step(busy=0.5, dt_s=1.0)
    cpu_s, run_s = _cpu(pids) - cpu0, _runtime(pids) - run0
    wall, ticks = time.monotonic() - wall0, hooks.interval_lines(node, probe) - ticks0
    pss_mb = sum(procstats.pss_kb(p) for p in pids) / 1024
    return {
        "jobs": JOBS,
        "processes": len(pids),
        "agent_is_only_process": pids == [pid],
        "duration_s": round(wall, 1),
        "ticks": ticks,
        "cpu_pct_of_core": round(cpu_s * 100 / wall, 3),
        "schedstat_pct_of_core": round(run_s * 100 / wall, 3),
        "cpu_ms_per_tick": round(run_s * 1000 / max(ticks, 1), 1),
        "pss_mb": round(pss_mb, 1),
        "pss_mb_per_job": round(pss_mb / JOBS, 2),
        "agent_peak_rss_mb": round(procstats.status_kb(pid, "VmHWM") / 1024, 1),
        "slurmstepd_pss_mb_for_scale": SLURMSTEPD_PSS_MB * JOBS,
    }


def _cpu(pids: list[int]) -> float:
    return sum(procstats.cpu_s(pid) for pid in pids)


def _runtime(pids: list[int]) -> float:
    return sum(procstats.runtime_s(pid) for pid in pids)
