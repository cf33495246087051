"""Measure jobcarbon's footprint on this machine: `python3 -m bench.run [--quick]`.

Runs the real prolog, epilog and agent against a simulated node in a scratch directory, prints a
table, and writes bench/results/latest.json and the results block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import calibration, density, footprint, gpu_costs, ingest, latency, report, sampler_cost, startup
from bench.hooks import REPO_ROOT
from slurm_plugin.storage import dialect
from testbed import postgres


@dataclass(frozen=True)
class Plan:
    warm_runs: int
    cold_runs: int
    sampler_s: float
    density_s: float
    startup_runs: int
    ingest_runs: int
    footprint_runs: int


FULL = Plan(
    warm_runs=100, cold_runs=50, sampler_s=60, density_s=60, startup_runs=50, ingest_runs=3, footprint_runs=20
)
QUICK = Plan(
    warm_runs=50, cold_runs=20, sampler_s=15, density_s=30, startup_runs=20, ingest_runs=1, footprint_runs=10
)


def scenarios(plan: Plan, scratch: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    return {
        "calibration": calibration.measure,
        "startup": lambda: startup.measure(plan.startup_runs, scratch),
        # The database host's figures first: the node scenarios leave agents and journal writeback behind.
        "ingest": lambda: ingest.measure(scratch / "ingest", plan.ingest_runs),
        "footprint": lambda: footprint.measure(plan.footprint_runs, scratch=scratch),
        "latency_warm": lambda: latency.measure_warm(scratch, plan.warm_runs),
        "latency_cold": lambda: latency.measure_cold(scratch, plan.cold_runs),
        "sampler": lambda: sampler_cost.measure(scratch, plan.sampler_s),
        "sampler_no_fsync": lambda: sampler_cost.measure(scratch, plan.sampler_s, fsync=False),
        "density": lambda: density.measure(scratch, plan.density_s),
        # Free NVML calls and an H200's (issue 18); the H200 windows last a counter interval (120 s).
        "gpu_costs": lambda: gpu_costs.measure(scratch / "gpu-costs", plan.sampler_s, plan.cold_runs),
        # Last: 64 deliverers leave much to write back, and PostgreSQL's server keeps writing WAL and
        # checkpointing for a while after they are done. Issue 6 asks for 64 on both backends.
        "ingest_sqlite_64": lambda: ingest.measure(scratch / "ingest-64", 1, processes=64),
        "ingest_postgresql": lambda: _postgresql_ingest(scratch, plan, prepared=True),
        "ingest_postgresql_end_to_end": lambda: _postgresql_ingest(scratch, plan, prepared=False),
    }


def _postgresql_ingest(scratch: Path, plan: Plan, prepared: bool) -> dict[str, Any] | None:
    """64 deliverers into the loopback PostgreSQL server (testbed/postgres.py), where it can run: the
    delivery alone (`prepared`, what the server sustains) or with the nodes' work on the same CPUs."""
    reason = postgres.unavailable_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return None
    return ingest.measure(
        scratch / f"ingest-postgresql-{prepared}",
        plan.ingest_runs,
        processes=64,
        backend=dialect.POSTGRESQL,
        prepared=prepared,
    )


def run_all(plan: Plan, scratch: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, scenario in scenarios(plan, scratch).items():
        os.sync()  # what an earlier scenario left to write back must not slow this one
        started = time.monotonic()
        print(f"== {name} ...", flush=True)
        results[name] = scenario()
        print(json.dumps(results[name], indent=1), f"({time.monotonic() - started:.0f} s)", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter windows (about 2 minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="jobcarbon-bench-"))
    try:
        results = run_all(QUICK if args.quick else FULL, scratch)
        rows = report.metrics(results)
        facts = report.machine(scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(report.table(rows))
    report.write(
        results,
        rows,
        facts,
        args.quick,
        REPO_ROOT / "bench/results/latest.json",
        REPO_ROOT / "docs/benchmarks.md",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
