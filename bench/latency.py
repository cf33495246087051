"""Scenarios 1 and 2: prolog wall time, and time from prolog to the job's first sample.

Warm: an anchor job keeps the agent alive (as other jobs do on a busy node) while each measured job
runs prolog → first sample → epilog. Cold: no agent is running, so the prolog has to start one, as on
a node that runs one job at a time; the node's first hook after boot takes the full path (no pointer
in /run/jobcarbon yet) and is reported on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import hooks
from bench.node import Node, add_job_cgroup, build_node
from bench.stats import summary_ms

DEFAULT_INTERVAL_S = 10.0
ANCHOR_JOB = 1
FIRST_JOB = 1000


@dataclass
class Timings:
    prolog_s: list[float] = field(default_factory=list)
    first_sample_s: list[float] = field(default_factory=list)
    epilog_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "prolog": summary_ms(self.prolog_s),
            "first_sample": summary_ms(self.first_sample_s),
            "epilog": summary_ms(self.epilog_s),
        }


def start_job(node: Node, job_id: int, timings: Timings) -> None:
    """Prolog (timed), then wait for the job's first sample and note how long after the prolog."""
    add_job_cgroup(node, job_id)
    timings.prolog_s.append(hooks.run_hook("prolog", node, job_id))
    header = hooks.wait_header(node, f"{job_id}.0", timeout_s=DEFAULT_INTERVAL_S * 3)
    timings.first_sample_s.append(header["first_sample"] - header["start"])


def end_job(node: Node, job_id: int, timings: Timings) -> None:
    timings.epilog_s.append(hooks.run_hook("epilog", node, job_id))


def measure_warm(scratch: Path, runs: int) -> dict[str, Any]:
    """`runs` jobs one after another while the agent is already running."""
    node = build_node(scratch / "warm", DEFAULT_INTERVAL_S)
    timings = Timings()
    try:
        add_job_cgroup(node, ANCHOR_JOB)
        hooks.run_hook("prolog", node, ANCHOR_JOB)
        hooks.wait_header(node, f"{ANCHOR_JOB}.0", timeout_s=DEFAULT_INTERVAL_S * 3)
        for index in range(runs):
            start_job(node, FIRST_JOB + index, timings)
            end_job(node, FIRST_JOB + index, timings)
        hooks.run_hook("epilog", node, ANCHOR_JOB)
    finally:
        leftover = hooks.stop_agents(node)
    return {**timings.summary(), "agents_left_running": len(leftover)}


def measure_cold(scratch: Path, runs: int) -> dict[str, Any]:
    """`runs` jobs each on a node with no agent: the prolog spawns it, the epilog lets it exit."""
    node = build_node(scratch / "cold", DEFAULT_INTERVAL_S)
    first, timings = Timings(), Timings()
    exits: list[bool] = []
    try:
        for index in range(runs + 1):
            start_job(node, FIRST_JOB + index, timings if index else first)
            pid = hooks.agent_pid(node)
            end_job(node, FIRST_JOB + index, timings if index else first)
            exits.append(hooks.wait_exit(pid, timeout_s=5.0))
    finally:
        leftover = hooks.stop_agents(node)
    return {
        **timings.summary(),
        "first_after_boot": first.summary(),
        "agent_exited_after_epilog": all(exits),
        "agents_left_running": len(leftover),
    }
