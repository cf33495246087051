"""What the node ledger costs an idle node: a resident agent (`jobcarbon agent --persistent`) with no job,
ticking every `ledger.idle_tick_s` and writing a node record every `ledger.record_interval_s`, and the
deliverer each record starts. The budget is 0.1 % of one core (issue 15).

The agent runs on a simulated node (2 RAPL packages with DRAM, real /proc) at a short idle tick, so that
a minute holds enough wake-ups to measure; its CPU per wake-up and per record, and a deliverer's CPU,
are then projected onto the default settings (60 s tick, a record every 900 s).

    python3 -m bench.ledger_idle [--quick]      (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procstats
from slurm_plugin import config as config_module
from testbed.powermodel import build_powercap_tree

REPO = Path(__file__).resolve().parents[1]
TICK_S = 0.5  # the bench's idle tick
RECORD_S = 5.0  # the bench's record interval
INTERVAL_S = 2.0  # the bench's ledger interval (records hold the intervals closed)
DEFAULT = config_module.Ledger()


def _config(root: Path, database: Path) -> Path:
    build_powercap_tree(root / "sys", packages=2, dram=True)
    (root / "cgroup").mkdir()
    config = root / "jobcarbon.yaml"
    config.write_text(
        f"cluster: bench\nnode: bench-node\npaths:\n  sysfs: {root / 'sys'}\n  cgroupfs: {root / 'cgroup'}\n"
        f"  spool: {root / 'spool'}\n  outbox: {root / 'outbox'}\n  log_file: {root / 'log'}\n"
        f"  quarantine: {root / 'quarantine'}\nsampler:\n  interval_s: {TICK_S}\n"
        f"database:\n  url: sqlite:///{database}\n  deliver_from_nodes: false\n"
        f"ledger:\n  interval_s: {INTERVAL_S}\n  idle_tick_s: {TICK_S}\n  record_interval_s: {RECORD_S}\n"
    )
    return config


def _agent_cost(config: Path, window_s: float) -> dict[str, Any]:
    """The resident agent's CPU over `window_s` after start-up, per wake-up and per node record."""
    env = {**os.environ, "JOBCARBON_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    agent = subprocess.Popen([sys.executable, "-m", "slurm_plugin.node.agent", "--persistent"], env=env)
    outbox = config.parent / "outbox" / "node"
    try:
        time.sleep(3.0)  # imports and the first tick
        records_before = len(list(outbox.glob("*.json"))) if outbox.exists() else 0
        start_cpu, start = procstats.runtime_s(agent.pid), time.monotonic()
        time.sleep(window_s)
        cpu, elapsed = procstats.runtime_s(agent.pid) - start_cpu, time.monotonic() - start
        records = len(list(outbox.glob("*.json"))) - records_before
        rss_kb = procstats.status_kb(agent.pid, "VmRSS")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
    wakeups = elapsed / TICK_S
    return {
        "window_s": round(elapsed, 1),
        "cpu_s": round(cpu, 4),
        "core_share": cpu / elapsed,
        "wakeups": round(wakeups),
        "records": records,
        "cpu_ms_per_wakeup": 1000 * cpu / wakeups,
        "rss_mb": rss_kb / 1024,
    }


def _delivery_cost(config: Path, rounds: int) -> list[float]:
    """CPU seconds of one deliverer (`python -m slurm_plugin.accounting.delivery`) storing a node record."""
    env = {**os.environ, "JOBCARBON_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    text = config.read_text().replace("deliver_from_nodes: false", "deliver_from_nodes: true")
    config.write_text(text)
    costs = []
    outbox = config.parent / "outbox" / "node"
    for _ in range(rounds):
        if not list(outbox.glob("*.json")):
            break
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "slurm_plugin.accounting.delivery"], env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        costs.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 20 s window instead of 60 s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jcledger.") as scratch:
        root = Path(scratch)
        database = root / "jobcarbon.db"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "slurm_plugin.cli.main",
                "--config",
                str(_config(root, database)),
                "db",
                "upgrade",
            ],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=True,
            capture_output=True,
        )
        agent = _agent_cost(root / "jobcarbon.yaml", 20.0 if args.quick else 60.0)
        delivery = _delivery_cost(root / "jobcarbon.yaml", 3)
    deliver_s = sorted(delivery)[len(delivery) // 2] if delivery else None
    # A record's write falls in one of the wake-ups measured, which counts it once per RECORD_S / TICK_S
    # wake-ups: more often than at the defaults, so the projection errs high.
    projected = agent["cpu_ms_per_wakeup"] / 1000 / DEFAULT.idle_tick_s
    with_delivery = projected + (deliver_s or 0.0) / DEFAULT.record_interval_s
    print(
        json.dumps(
            {
                "agent": agent,
                "delivery_cpu_s": delivery,
                "projected_at_defaults": {
                    "idle_tick_s": DEFAULT.idle_tick_s,
                    "record_interval_s": DEFAULT.record_interval_s,
                    "agent_core_share": projected,
                    "with_deliveries_core_share": with_delivery,
                    "budget_core_share": 0.001,
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
