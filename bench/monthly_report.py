"""`jobcarbon report --month` over a million jobs in 200 accounts: wall time and peak memory.

`python3 -m bench.monthly_report [--backend sqlite|postgresql] [--jobs 1000000] [--accounts 200] [--months 1]
[--by account] [--format csv] [--month 2026-01] [--top 0]`. Builds (once, cached under
/var/tmp/jobcarbon-bench, migrated in place by later schema versions) an SQLite database with that many
finished jobs, one part, one current footprint and its monthly figures (uncertainty ends included) each,
written directly with executemany; 5% of the jobs have a GPU and 2% run longer. The jobs are spread evenly
over the first `--months` months of 2026, stored month after month as ingest stores them: with 1, every job is
in the reported month (the worst case for a month); a year of 10 M jobs is `--jobs 10000000 --months 12`, its
trend `--month 2026-01..2026-12`. For PostgreSQL it is copied (once, kept in a schema of the loopback test
server, testbed/postgres.py) with `jobcarbon db migrate`'s code, then ANALYZEd. Then runs the whole `jobcarbon
report` process, as an admin would, and reports its wall time and peak RSS (getrusage of the children).
Targets (issue 15): a month <= 5 s, a range or list of months (the year trend, `--month
2026-01..2026-12`) <= 15 s, <= 500 MB, on both backends; `--top N` adds the largest jobs and users.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from slurm_plugin import uncertainty
from slurm_plugin.accounting import months as calendar
from slurm_plugin.storage import Store, StoreError, dialect, transfer
from testbed import postgres

TARGET_S = 5.0  # a month
TARGET_PERIOD_S = 15.0  # a range or list of months: the year trend
TARGET_MB = 500.0
MONTH = "2026-01"
CACHE = Path("/var/tmp/jobcarbon-bench")
BATCH = 50_000
ENTRY = "import sys; from slurm_plugin.cli.main import main; sys.exit(main())"  # as `jobcarbon` runs
MONTH_STARTS = [calendar.parse(f"2026-{m:02d}", "UTC").start_s for m in range(1, 13)]


def _insert(conn: sqlite3.Connection, table: str, rows: list[tuple]) -> None:
    """Rows giving the table's first columns in order; the columns later migrations added take their
    defaults (NULL, or e.g. a job's legacy run '')."""
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")][: len(rows[0])]
    names, marks = ",".join(columns), ",".join("?" * len(columns))
    conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608 - our tables


def build(path: Path, jobs: int, accounts: int, months: int = 1) -> None:
    Store.open(f"sqlite:///{path}", 10.0).close()  # the schema, through the migrations
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: the jobs' indexes take random inserts
    rng = random.Random(42)
    for first in range(1, jobs + 1, BATCH):
        conn.execute("BEGIN")  # a transaction a batch: the WAL stays small (checkpointed as it goes)
        job_rows, part_rows, print_rows, month_rows = [], [], [], []
        for i in range(first, min(first + BATCH, jobs + 1)):
            month = (i - 1) * months // jobs  # in the order ingest stores them: month by month
            start = MONTH_STARTS[month] + rng.uniform(0, 27 * 86400)
            hours = rng.uniform(0.1, 48) if i % 50 == 0 else rng.uniform(0.1, 8)
            end = start + hours * 3600
            user = rng.randrange(2000)
            gpu = i % 20 == 0
            it_j = hours * 3600 * (400 + (300 if gpu else 0))
            job_rows.append(
                (
                    i,
                    "bench",
                    i,
                    0,
                    f"user{user}",
                    10000 + user,
                    5000 + user % 50,
                    f"acct{i % accounts:03d}",
                    "gpu" if gpu else "batch",
                    start,
                    end,
                )
            )
            part_rows.append(
                (
                    i,
                    i,
                    f"node{i % 2000:04d}",
                    start,
                    end,
                    end - start,
                    8,
                    "0-7",
                    "[]",
                    it_j * 0.8,
                    "measured",
                    it_j * 0.1,
                    "apportioned",
                    it_j * 0.1 if gpu else None,
                    "measured" if gpu else None,
                    it_j,
                    1.0,
                    "complete",
                    "[]",
                    "[]",
                    "bench",
                    b"",
                    end + 60,
                )
            )
            co2e = it_j * 1.2 / 3.6e6 * 350
            print_rows.append((i, i, 1, 1, end + 60, it_j, it_j * 1.2, co2e, 350.0, "zone_yearly", 0.0, "{}"))
            model = json.dumps({"NVIDIA A100-SXM4-40GB": hours}) if gpu else "{}"
            measured = it_j * (0.9 if gpu else 0.8)
            month_rows.append(
                (
                    i,
                    f"2026-{month + 1:02d}",
                    it_j,
                    it_j * 1.2,
                    co2e,
                    it_j * 0.8,
                    it_j * 0.1,
                    it_j * 0.1,
                    0.0,
                    0.0,
                    8 * hours,
                    hours,
                    hours if gpu else 0.0,
                    model,
                    "DE",
                    '["Electricity Maps yearly 2025 (ODbL)"]',
                    measured,
                    0.0,
                    it_j - measured,
                    *_ends(it_j, measured),
                    *_ends(it_j * 1.2, measured * 1.2),
                    *(co2e * f for f in _ends(1.0, measured / it_j)),
                    *(1, end + 60, i, end + 60, *job_rows[-1][1:3], *job_rows[-1][4:9]),  # the job keys
                )
            )
        for table, rows in (
            ("jobs", job_rows),
            ("job_parts", part_rows),
            ("footprints", print_rows),
            ("footprint_months", month_rows),
        ):
            _insert(conn, table, rows)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def _ends(value: float, measured: float) -> tuple[float, float]:
    """The low and high ends of `value` whose `measured` part is measured and the rest apportioned
    (slurm_plugin/uncertainty.py's bands), at a zone's yearly intensity for CO2e: plausible numbers."""
    energy = uncertainty.ENERGY
    rest = value - measured
    low = measured * energy["measured"].low + rest * energy["apportioned"].low
    high = measured * energy["measured"].high + rest * energy["apportioned"].high
    return low, high


def cached(jobs: int, accounts: int, months: int = 1) -> Path:
    """The database of `jobs` jobs, built once and kept across schema versions: opening it migrates it in
    place (building ten million jobs takes half an hour, a migration minutes)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    name = f"{jobs}-{accounts}" + ("" if months == 1 else f"-{months}m")
    path = CACHE / f"monthly-{name}.db"
    if not path.exists():
        _adopt(path, name)
    if not path.exists():
        began = time.monotonic()
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build(partial, jobs, accounts, months)
        partial.rename(path)
        print(f"built {path} in {time.monotonic() - began:.1f} s", file=sys.stderr)
    Store.open(f"sqlite:///{path}", 10.0).close()  # to this version's schema
    return path


def _adopt(path: Path, name: str) -> None:
    """The newest cache file of the naming before (`v15-{name}.db`: its schema version), renamed to `path`
    with its WAL."""
    found = [(int(m[1]), f) for f in CACHE.iterdir() if (m := re.fullmatch(rf"v(\d+)-{name}\.db", f.name))]
    if found:
        newest = max(found)[1]
        for end in ("-wal", "-shm", ""):
            if Path(f"{newest}{end}").exists():
                Path(f"{newest}{end}").replace(f"{path}{end}")
        print(f"renamed {newest} to {path}", file=sys.stderr)


def postgres_copy(path: Path, jobs: int, accounts: int, months: int = 1) -> tuple[str, str]:
    """The cached SQLite database copied into a schema of the test server (once, kept across schema
    versions as the file is); its URL and password file."""
    server = postgres.ensure_server()
    name = f"bench_monthly_{jobs}_{accounts}" + ("" if months == 1 else f"_{months}m")
    _adopt_schema(name)
    url = postgres.schema_url(server, name)
    password_file = str(server.password_file)
    if not _complete(url, password_file, path):
        began = time.monotonic()
        postgres.drop_schema(name)  # what an interrupted copy left
        postgres.create_schema(name)
        target = Store.open(url, 10.0, password_file=password_file)
        try:
            transfer.copy_into(f"sqlite:///{path}", target, lambda table, rows: None)  # ANALYZEs them too
        except BaseException:
            target.close()
            postgres.drop_schema(name)
            raise
        target.close()
        print(f"copied into PostgreSQL schema {name} in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return url, password_file


def _adopt_schema(name: str) -> None:
    """The newest schema of the naming before (`bench_monthly_v15_...`), renamed to `name`."""
    _, _, rest = name.partition("bench_monthly_")
    schemas = postgres.schemas()
    found = [(int(m[1]), s) for s in schemas if (m := re.fullmatch(rf"bench_monthly_v(\d+)_{rest}", s))]
    if name not in schemas and found:
        postgres.rename_schema(max(found)[1], name)


def _complete(url: str, password_file: str, path: Path) -> bool:
    """Whether the schema holds the whole copy of the file (an interrupted one is rolled back, but its
    schema stays; ledger intervals may have been added to the file since): opening it migrates it."""
    try:
        store = Store.open(url, 10.0, create=False, password_file=password_file)
    except StoreError:
        return False
    try:
        with sqlite3.connect(path) as source:
            return all(
                store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608 - constants
                == source.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
                for table in ("jobs", "node_intervals")
            )
    finally:
        store.close()


def configure(backend: str, jobs: int, accounts: int, months: int) -> Path:
    """A `jobcarbon` configuration file naming the cached database of that many jobs on the backend."""
    database = cached(jobs, accounts, months)
    url, password_file = f"sqlite:///{database}", None
    if backend == dialect.POSTGRESQL:
        url, password_file = postgres_copy(database, jobs, accounts, months)
    config = CACHE / f"jobcarbon-{backend}.yaml"
    secret = f"\n  password_file: {password_file}" if password_file else ""
    config.write_text(f"database:\n  url: '{url}'{secret}\naccounting:\n  timezone: UTC\n")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=(dialect.SQLITE, dialect.POSTGRESQL), default=dialect.SQLITE)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--months", type=int, default=1, choices=range(1, 13), help="months the jobs span")
    parser.add_argument("--by", default="account")
    parser.add_argument("--format", default="csv")
    parser.add_argument("--month", default=MONTH, help="a month, range or list (report --month)")
    parser.add_argument("--top", default="0", help="--top N: the largest jobs and users per group and month")
    args = parser.parse_args(argv)
    config = configure(args.backend, args.jobs, args.accounts, args.months)
    command = [
        sys.executable,
        "-c",
        ENTRY,
        "--config",
        str(config),
        "report",
        "--month",
        args.month,
        "--by",
        args.by,
        "--format",
        args.format,
        "--top",
        args.top,
    ]
    target_s = TARGET_PERIOD_S if ".." in args.month or "," in args.month else TARGET_S
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, check=False)
    wall_s = time.monotonic() - began
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        print(done.stderr.decode(), file=sys.stderr)
        return 1
    lines = done.stdout.decode().count("\n")
    result = {
        "backend": args.backend,
        "jobs": args.jobs,
        "accounts": args.accounts,
        "by": args.by,
        "format": args.format,
        "month": args.month,
        "top": args.top,
        "wall_s": round(wall_s, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "output_lines": lines,
        "target_s": target_s,
        "target_mb": TARGET_MB,
        "ok": wall_s <= target_s and peak_mb <= TARGET_MB,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
