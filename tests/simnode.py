"""A simulated compute node for hook and agent tests: powercap tree, cgroup v1 jobs, config, hooks.

Counters are written by the test (deterministic), /proc is the real one; the hooks run as the real
scripts in `prolog/` and `epilog/`, with the environment slurmd would give them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.powermodel import build_powercap_tree, set_energy

REPO = Path(__file__).resolve().parent.parent
NODE = "simnode"


def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def driven_agent(node: SimNode, log: list[str] | None = None, persistent: bool = False) -> Any:
    """An agent in this process, driven a step at a time (no loop, no socket), its spool prepared;
    its log lines go to `log` as "level: text"."""
    from slurm_plugin import config as config_module
    from slurm_plugin.node.agent import Agent

    lines = log if log is not None else []
    settings = config_module.load(node.config)
    agent = Agent(settings, lambda level, text: lines.append(f"{level}: {text}"), persistent=persistent)
    agent.spool.prepare()
    return agent


class SimNode:
    def __init__(self, root: Path, interval_s: float = 0.2, extra_config: str = "", slurm_query_s: float = 0):
        self.root = root
        self.sysfs = root / "sys"
        self.cgroupfs = root / "cgroup"
        self.spool = root / "spool"
        self.outbox = root / "outbox"
        self.log = root / "jobcarbon.log"
        self.config = root / "config.yaml"
        build_powercap_tree(self.sysfs, packages=1, dram=True, tdp_w=100.0)
        for controller in ("cpuacct", "memory", "cpuset"):
            (self.cgroupfs / controller / f"slurm_{NODE}").mkdir(parents=True)
        self.config.write_text(
            f"cluster: sim\npaths:\n  sysfs: {self.sysfs}\n  cgroupfs: {self.cgroupfs}\n"
            f"  spool: {self.spool}\n  outbox: {self.outbox}\n  log_file: {self.log}\n"
            f"sampler:\n  interval_s: {interval_s}\n  stop_timeout_s: 3\n  journal_fsync: false\n"
            f"  slurm_query_s: {slurm_query_s}\n"  # no Slurm here: 0 writes records at once
            f"cpu:\n  idle_power_w: 20\n{extra_config}"
        )

    def env(self, job_id: int, uid: int = 1000, **extra: str) -> dict[str, str]:
        """What slurmd passes a prolog (22.05 names), plus the hooks' own overrides."""
        return {
            "SLURM_JOB_ID": str(job_id),
            "SLURM_JOB_UID": str(uid),
            "SLURM_JOB_GID": str(uid),
            "SLURM_JOB_USER": f"user{uid}",
            "SLURM_JOB_ACCOUNT": "physics",
            "SLURM_JOB_PARTITION": "batch",
            "SLURMD_NODENAME": NODE,
            "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
            "JOBCARBON_PYTHON": sys.executable,
            "JOBCARBON_CONFIG": str(self.config),
            "JOBCARBON_PYTHONPATH": str(REPO),
            "JOBCARBON_RUNDIR": str(self.root / "run"),
            "JOBCARBON_HOOK_LOG": str(self.root / "hooks.log"),  # never the host's /var/log/jobcarbon
            **extra,
        }

    def hook(self, name: str, job_id: int, **extra: str) -> subprocess.CompletedProcess[bytes]:
        script = REPO / name / f"jobcarbon-{name}"
        return subprocess.run([script], env=self.env(job_id, **extra), capture_output=True, timeout=60)

    def job_cgroup(self, job_id: int, uid: int = 1000, cpus: str = "0", cpu_s: float = 0.0, mem: int = 0):
        """Create or update the job's cgroup v1 directories as slurmstepd would."""
        relative = Path(f"slurm_{NODE}", f"uid_{uid}", f"job_{job_id}")
        files = {
            "cpuacct": {"cpuacct.usage": str(int(cpu_s * 1e9))},
            "memory": {"memory.usage_in_bytes": str(mem), "memory.stat": "total_inactive_file 0\n"},
            "cpuset": {"cpuset.cpus": cpus},
        }
        for controller, contents in files.items():
            directory = self.cgroupfs / controller / relative
            directory.mkdir(parents=True, exist_ok=True)
            for name, text in contents.items():
                (directory / name).write_text(text)

    def set_rapl(self, package_j: float, dram_j: float) -> None:
        set_energy(self.sysfs, "package-0", int(package_j * 1e6))
        set_energy(self.sysfs, "dram-0", int(dram_j * 1e6))

    def journal(self, job_id: int, restart: int = 0) -> list[dict[str, Any]]:
        path = self.spool / "jobs" / f"{job_id}.{restart}" / "journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def intervals(self, job_id: int, restart: int = 0) -> int:
        return sum(1 for entry in self.journal(job_id, restart) if entry["type"] == "interval")

    def record(self, job_id: int, restart: int = 0) -> dict[str, Any] | None:
        """The run's record; an epilog returns before the agent writes it, so wait while a stop is pending."""
        stop = self.spool / "jobs" / f"{job_id}.{restart}" / "stop"
        deadline = time.monotonic() + 10.0
        while stop.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        found = sorted(self.outbox.glob(f"sim_{job_id}_{restart}_{NODE}_*.json"))  # the run ends the name
        return json.loads(found[-1].read_text()) if found else None

    def agent_pid(self) -> int | None:
        from slurm_plugin.node.agent_client import request

        try:
            return int(request(self.spool / "agent.sock", {"op": "status"}, 1.0)["pid"])
        except OSError:
            return None

    def stop_agent(self) -> None:
        pid = self.agent_pid()
        if pid:
            os.kill(pid, 15)
            wait_for(lambda: self.agent_pid() is None, what="agent exit")
