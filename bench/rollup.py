"""`jobcarbon rollup` over bench.monthly_report's database: a year's rollups, then one month's.

`python3 -m bench.rollup [--backend sqlite|postgresql] [--jobs 10000000] [--accounts 200] [--months 12]`:
takes (or builds) the cached database of bench.monthly_report (with bench.year_ledger's node intervals, if
added, the node ledger's rollups too), runs the whole `jobcarbon rollup` process that builds every month's
rollups, then marks one month changed (a stored footprint month and a node interval, as their triggers
would) and runs it again: wall time and peak RSS of each. Then `python3 -m bench.monthly_report` with the
same arguments measures the reports, which read the rollups.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench import monthly_report
from slurm_plugin import config as settings
from slurm_plugin.accounting import months as calendar
from slurm_plugin.storage import Store, dialect


def _rollup(config: str) -> dict[str, float | int]:
    """One `jobcarbon rollup` process: its wall time, its own peak RSS (wait4: not the largest of every
    child so far) and the lines it printed (one a month and ledger rebuilt)."""
    began = time.monotonic()
    command = [sys.executable, "-c", monthly_report.ENTRY, "--config", config, "rollup"]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as child:  # its errors on ours
        assert child.stdout is not None
        printed = child.stdout.read()  # not communicate(): it would reap the child before wait4
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, command)
    return {
        "wall_s": round(time.monotonic() - began, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "rebuilt": printed.decode().count("\n"),
    }


def _mark(config: str, month: str) -> None:
    """What the triggers add when a footprint month and a node interval of `month` are stored."""
    database = settings.load(config).database
    store = Store.open(database.url, 10.0, False, database.password_file)
    start_s = calendar.parse(month, "UTC").start_s
    try:
        with store.transaction():
            store.db.execute("INSERT INTO month_changes (month) VALUES (:month)", {"month": month})
            store.db.execute(
                "INSERT INTO ledger_changes (t0_s, t1_s) VALUES (:t, :t)", {"t": start_s + 86400}
            )
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=(dialect.SQLITE, dialect.POSTGRESQL), default=dialect.SQLITE)
    parser.add_argument("--jobs", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--months", type=int, default=12, choices=range(1, 13))
    parser.add_argument("--month", default="2026-03", help="the month marked changed for the second run")
    args = parser.parse_args(argv)
    config = str(monthly_report.configure(args.backend, args.jobs, args.accounts, args.months))
    every = _rollup(config)
    _mark(config, args.month)
    one = _rollup(config)
    print(json.dumps({"backend": args.backend, "jobs": args.jobs, "every_month": every, "one_month": one}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
