"""`jobcarbon rollup` over bench.monthly_report's database: a year's rollups, then one month's.

`python3 -m bench.rollup [--jobs 10000000] [--accounts 200] [--months 12]`: takes (or builds) the cached
database of bench.monthly_report, runs the whole `jobcarbon rollup` process that builds every month's
rollup, then marks one month changed (as a stored footprint month would) and runs it again: wall time and
peak RSS of each. Then `python3 -m bench.monthly_report` with the same arguments measures the reports,
which read the rollups.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import time

from bench import monthly_report

ENTRY = "import sys; from slurm_plugin.cli.main import main; sys.exit(main())"  # as `jobcarbon` runs


def _rollup(config: str) -> dict[str, float | int]:
    """One `jobcarbon rollup` process: its wall time, peak RSS and the months it rebuilt."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, "--config", config, "rollup"], capture_output=True, check=True
    )
    return {
        "wall_s": round(time.monotonic() - began, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "months": done.stdout.decode().count("\n"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--months", type=int, default=12, choices=range(1, 13))
    parser.add_argument("--month", default="2026-03", help="the month marked changed for the second run")
    args = parser.parse_args(argv)
    database = monthly_report.cached(args.jobs, args.accounts, args.months)
    config = monthly_report.CACHE / "jobcarbon-rollup.yaml"
    config.write_text(f"database:\n  url: 'sqlite:///{database}'\naccounting:\n  timezone: UTC\n")
    every = _rollup(str(config))
    with sqlite3.connect(database) as conn:  # what the trigger adds when a footprint month is stored
        conn.execute("INSERT INTO month_changes (month) VALUES (?)", (args.month,))
    one = _rollup(str(config))
    print(json.dumps({"jobs": args.jobs, "every_month": every, "one_month": one}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
