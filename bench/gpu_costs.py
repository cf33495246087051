"""Scenario 7: what a real GPU's NVML calls cost the agent and the hooks: `python3 -m bench.gpu_costs`.

The NVML stand-in's calls are free unless told otherwise; an H200 burns 3.85 ms of CPU per energy
counter read and 10 µs per power reading (docs/testing.md). Each figure is taken twice, with free calls
and with those costs (`nvml_standin.H200_COSTS_US`):

- the agent's CPU per sample for one 8-GPU job at `interval_s` 1 and 10, over a window of at least one
  `nvml.counter_interval_s`, so the periodic counter reads and the journal writes of the intervals
  held back until them weigh in as they do on a node;
- prolog and epilog wall time of 8-GPU jobs while a CPU job keeps the agent running; after each hook the
  benchmark waits for the agent's deferred work (the journal header, the record) before going on, and
  each job runs `JOB_S`.

And once, without GPUs: `ENDS` jobs whose epilogs all start at once, with the ticks they cause (the
interval lines of a job that keeps running) and the time until every record is written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import hooks, sampler_cost
from bench.node import Node, add_job_cgroup, build_node
from bench.stats import summary_ms
from slurm_plugin.config import Nvml
from testbed.nvml_standin import H200_COSTS_US

GPUS = 8
COSTS: dict[str, dict[str, int] | None] = {"free": None, "h200": H200_COSTS_US}
COUNTER_INTERVAL_S = Nvml().counter_interval_s
OBSERVER_JOB = 1
FIRST_JOB = 3000
ENDS = 128
JOB_S = 0.5  # each timed job runs this long, so its epilog finds the agent done with its start


def measure(scratch: Path, window_s: float, hook_runs: int, ends: int = ENDS) -> dict[str, Any]:
    """Every figure for both cost models, and the simultaneous ends."""
    results: dict[str, Any] = {}
    for name, costs in COSTS.items():
        # A counter interval at least: its anchor's counter reads, and the journal writes of the
        # intervals held back until it, then weigh in as on a node.
        long_s = max(window_s, COUNTER_INTERVAL_S)
        results[name] = {
            "sampler_1s": sampler_cost.measure(scratch / name, long_s, interval_s=1.0, nvml_costs=costs),
            "sampler_10s": sampler_cost.measure(
                scratch / name, max(long_s, 60.0), interval_s=10.0, nvml_costs=costs
            ),
            "hooks": hook_times(scratch / name, hook_runs, costs),
        }
    results["ends_together"] = ends_together(scratch / "ends", ends)
    return results


def hook_times(scratch: Path, runs: int, costs: dict[str, int] | None) -> dict[str, Any]:
    """Prolog and epilog wall time of `runs` 8-GPU jobs, one after another, with the agent running."""
    node = build_node(scratch / "hooks", 10.0, gpus=GPUS, nvml_costs=costs)
    prologs: list[float] = []
    epilogs: list[float] = []
    try:
        _start_observer(node)
        for job_id in range(FIRST_JOB, FIRST_JOB + runs):
            add_job_cgroup(node, job_id)
            prologs.append(hooks.run_hook("prolog", node, job_id, gpus=GPUS))
            hooks.wait_header(node, f"{job_id}.0")
            time.sleep(JOB_S)
            epilogs.append(hooks.run_hook("epilog", node, job_id, gpus=GPUS))
            _wait_record(node, job_id)
        hooks.run_hook("epilog", node, OBSERVER_JOB)
    finally:
        hooks.stop_agents(node)
    return {"gpus_per_job": GPUS, "prolog": summary_ms(prologs), "epilog": summary_ms(epilogs)}


def ends_together(scratch: Path, jobs: int) -> dict[str, Any]:
    """`jobs` epilogs started at once: their wall time, the agent's ticks, the time to the last record."""
    node = build_node(scratch, 10.0)
    job_ids = range(FIRST_JOB, FIRST_JOB + jobs)
    try:
        _start_observer(node)
        for job_id in job_ids:
            add_job_cgroup(node, job_id)
            hooks.run_hook("prolog", node, job_id)
        for job_id in job_ids:
            hooks.wait_header(node, f"{job_id}.0")
        lines0 = hooks.interval_lines(node, f"{OBSERVER_JOB}.0")
        started = time.perf_counter()
        running = [
            subprocess.Popen([hooks.HOOKS["epilog"]], env=hooks.hook_env(node, job_id, "epilog"))
            for job_id in job_ids
        ]
        for process in running:
            process.wait(timeout=120)
        returned_s = time.perf_counter() - started
        for job_id in job_ids:
            _wait_record(node, job_id)
        written_s = time.perf_counter() - started
        ticks = hooks.interval_lines(node, f"{OBSERVER_JOB}.0") - lines0
        hooks.run_hook("epilog", node, OBSERVER_JOB)
    finally:
        hooks.stop_agents(node)
    return {
        "jobs": jobs,
        "epilogs_returned_s": round(returned_s, 2),
        "records_written_s": round(written_s, 2),
        "ticks": ticks,
    }


def _start_observer(node: Node) -> None:
    """A CPU job that keeps the agent running throughout, as other jobs do on a busy node."""
    add_job_cgroup(node, OBSERVER_JOB)
    hooks.run_hook("prolog", node, OBSERVER_JOB)
    hooks.wait_header(node, f"{OBSERVER_JOB}.0")


def _wait_record(node: Node, job_id: int, timeout_s: float = 30.0) -> None:
    """The agent writes the record after the epilog's answer: wait for it before the next job."""
    deadline = time.monotonic() + timeout_s
    while not any(node.outbox.glob(f"*_{job_id}_0_*.json")):
        if time.monotonic() >= deadline:
            raise hooks.BenchError(f"no record for job {job_id} after {timeout_s} s")
        time.sleep(hooks.POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.gpu_costs", description=__doc__)
    parser.add_argument("--window", type=float, default=60.0, help="sampler window at free calls, seconds")
    parser.add_argument("--runs", type=int, default=30, help="8-GPU jobs timed per cost model")
    parser.add_argument("--ends", type=int, default=ENDS, help="jobs whose epilogs start at once")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="jobcarbon-gpu-costs-"))
    try:
        print(json.dumps(measure(scratch, args.window, args.runs, args.ends), indent=1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
