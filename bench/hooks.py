"""Run the real prolog and epilog scripts as slurmd does, and find, query and stop the agent.

slurmd runs the hooks with an environment it builds itself (src/plugins/prep/script/
prep_script_slurmd.c: SLURM_* only, no PATH); the JOBCARBON_* variables are what an admin would
otherwise bake into the scripts' defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import procstats
from bench.node import JOB_UID, NODE_NAME, Node, add_job_cgroup
from slurm_plugin.node import agent_client

REPO_ROOT = Path(__file__).resolve().parents[1]
HOOKS = {"prolog": REPO_ROOT / "prolog/jobcarbon-prolog", "epilog": REPO_ROOT / "epilog/jobcarbon-epilog"}
POLL_S = 0.005


class BenchError(RuntimeError):
    """The system under test did not do what the benchmark waits for."""


def hook_env(node: Node, job_id: int, context: str, gpus: int = 0) -> dict[str, str]:
    """The scrubbed environment slurmd gives a prolog or epilog, plus JOBCARBON_*."""
    env = {
        "SLURM_SCRIPT_CONTEXT": f"{context}_slurmd",
        "SLURM_CLUSTER_NAME": "bench",
        "SLURM_JOB_ID": str(job_id),
        "SLURM_JOB_UID": str(JOB_UID),
        "SLURM_JOB_GID": str(JOB_UID),
        "SLURM_JOB_USER": "bench",
        "SLURM_JOB_ACCOUNT": "bench",
        "SLURM_JOB_PARTITION": "batch",
        "SLURMD_NODENAME": NODE_NAME,
        "JOBCARBON_PYTHON": str(node.python),
        "JOBCARBON_CONFIG": str(node.config),
    }
    if gpus:
        env["SLURM_JOB_GPUS"] = ",".join(str(index) for index in range(gpus))
    return env


def run_hook(name: str, node: Node, job_id: int, gpus: int = 0) -> float:
    """Run prolog/epilog for one job and return its wall time in seconds (fork to exit)."""
    env = hook_env(node, job_id, name, gpus)
    started = time.perf_counter()
    subprocess.run([HOOKS[name]], env=env, stdin=subprocess.DEVNULL, check=True, timeout=60)
    return time.perf_counter() - started


def wait_header(node: Node, key: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """Poll for the job's journal header line (written by the agent at the job's first sample)."""
    deadline = time.monotonic() + timeout_s
    path = node.journal(key)
    while time.monotonic() < deadline:
        try:
            with path.open("rb") as handle:
                line = handle.readline()
            if line.endswith(b"\n"):
                return json.loads(line)
        except FileNotFoundError:
            pass
        time.sleep(POLL_S)
    raise BenchError(f"no journal header for job {key} after {timeout_s} s (see {node.log_file})")


def start_jobs(node: Node, job_ids: list[int], timeout_s: float) -> None:
    """Give each job its cgroup and its prolog, then wait until the agent samples every one."""
    for job_id in job_ids:
        add_job_cgroup(node, job_id)
        run_hook("prolog", node, job_id)
    for job_id in job_ids:
        wait_header(node, f"{job_id}.0", timeout_s=timeout_s)


def interval_lines(node: Node, key: str) -> int:
    """How many samples the agent has journaled for the job so far."""
    with node.journal(key).open("rb") as handle:
        return sum(1 for line in handle if b'"type":"interval"' in line)


def agent_pid(node: Node) -> int:
    """The running agent's pid, from its status reply."""
    reply = agent_client.request(node.spool / "agent.sock", {"op": "status"}, 2.0)
    if not reply.get("ok"):
        raise BenchError(f"agent status failed: {reply}")
    return int(reply["pid"])


def wait_exit(pid: int, timeout_s: float) -> bool:
    """Wait for a process we did not fork (the agent is detached) to go away."""
    deadline = time.monotonic() + timeout_s
    while procstats.alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop_agents(node: Node, timeout_s: float = 5.0) -> list[int]:
    """End every agent started with this node's config (SIGTERM, then SIGKILL); return their pids."""
    pids = procstats.pids_with_env("JOBCARBON_CONFIG", str(node.config))
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    for pid in pids:
        if not wait_exit(pid, timeout_s):
            _signal(pid, signal.SIGKILL)
    return pids


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
