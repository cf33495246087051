"""`jobcarbon <jobid>` on a database of 1,000,000 jobs: whole-process wall time, direct and via the service.

`python3 -m bench.jobview [--jobs 1000000] [--runs 25] [--rebuild]`. The database is generated once
(bulk inserts in one transaction, schema from `Store.open`) and cached under /tmp/jobcarbon-bench,
keyed by the generator and schema versions. The bulk jobs have one to four nodes, a footprint each
and a short packed timeline; the timed jobs are stored through the real path (`Store.add_part`,
`join.accountant`): a day at 10 s on one node with four GPUs, and the same on four nodes.
Each timing is a fresh `jobcarbon` process, Python start-up included, as a user would run it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from bench.stats import summary_ms
from slurm_plugin.accounting import join
from slurm_plugin.accounting.footprint import Footprint
from slurm_plugin.config import Accounting
from slurm_plugin.storage import Store, migrations, packed_timeline
from tests.jobdb import DAY, HOUR, Job, day_series, gpu

GENERATOR = 2  # bump when the synthetic data changes
CACHE = Path("/tmp/jobcarbon-bench")
TARGET_MS = 300.0
SETTINGS = Accounting(zone="DE", pue=1.3)
USERS, ACCOUNTS, PARTITIONS = 2000, 60, ("batch", "gpu", "bigmem", "debug")
YEAR_S = 365 * 24 * HOUR
TIMED = {"gpu-1-node": 9_000_001, "gpu-4-nodes": 9_000_002}


def build(path: Path, jobs: int, seed: int = 1) -> None:
    """The bulk jobs in one transaction, then the timed jobs and a year of hourly intensity."""
    store = Store.open(f"sqlite:///{path}", busy_timeout_s=30.0)
    store.close()
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    job_rows, part_rows, timelines, prints = [], [], [], []
    record_zlib = zlib.compress(b"{}")
    part_id = 0
    for job_id in range(1, jobs + 1):
        end = DAY - rng.uniform(0, YEAR_S)
        start = end - rng.uniform(60, 48 * HOUR)
        uid = 10_000 + rng.randrange(USERS)
        account, partition = f"acct{rng.randrange(ACCOUNTS):02d}", rng.choice(PARTITIONS)
        job_rows.append((job_id, "hpc", job_id, 0, f"user{uid}", uid, uid, account, partition, start, end))
        for node in range(1 if rng.random() < 0.9 else rng.randint(2, 4)):
            part_id += 1
            joules = rng.uniform(1e4, 5e7)
            part_rows.append(_part(part_id, job_id, node, start, end, joules, record_zlib))
            step = (end - start) / 6
            rows = [(start + i * step, start + (i + 1) * step, joules / 6, None, None) for i in range(6)]
            timelines.append((part_id, 6, packed_timeline.encode(rows)))
            prints.append(_footprint(part_id, joules, rng))
        if len(part_rows) >= 50_000:
            _flush(conn, job_rows, part_rows, timelines, prints)
    _flush(conn, job_rows, part_rows, timelines, prints)
    conn.execute("COMMIT")
    conn.close()
    store = Store.open(f"sqlite:///{path}", busy_timeout_s=30.0)
    store.upsert_intensity(p for day in range(-366, 2) for p in _shifted(day_series(), day))
    for job in _timed_jobs():
        document = job.record()
        store.add_part(document, account=join.accountant(store, SETTINGS))
    store.close()


def _part(
    part_id: int, job_id: int, node: int, start: float, end: float, joules: float, blob: bytes
) -> tuple:
    return (part_id, job_id, f"node{node:04d}", start, end, end - start, 8, "0-7", "[]", joules * 0.9,
            "apportioned", joules * 0.1, "apportioned", None, None, joules, 0.99, "complete", "[]", "[]",
            "bench", blob, end)  # fmt: skip


def _footprint(part_id: int, joules: float, rng: random.Random) -> tuple:
    g = rng.uniform(100, 500)
    co2e_g = joules * 1.3 / 3.6e6 * g
    fields = Footprint(joules, joules * 1.3, co2e_g, g, 1.0, "measured_series", {"measured_series": joules},
                       ["electricitymaps"], ["lifecycle"], "DE").to_dict()  # fmt: skip
    return (part_id, part_id, 1, 1, DAY, joules, joules * 1.3, co2e_g, g, "measured_series", 1.0,
            json.dumps(fields, sort_keys=True, separators=(",", ":")))  # fmt: skip


INSERT_JOB = "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_PART = """INSERT INTO job_parts (id, job, node, start_s, end_s, elapsed_s, cpu_count, cpu_list,
    gpus_json, cpu_j, cpu_method, dram_j, dram_method, gpu_j, gpu_method, total_j, coverage_fraction, status,
    partial_reasons_json, notes_json, software_version, record_zlib, received_at_s)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_TIMELINE = "INSERT INTO timeline (part_id, intervals, columns_f64) VALUES (?, ?, ?)"
INSERT_FOOTPRINT = """INSERT INTO footprints (id, part_id, version, is_current, computed_at_s, it_energy_j,
    facility_energy_j, co2e_g, effective_g_per_kwh, rung, measured_intensity_fraction, fields_json)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def _flush(conn: sqlite3.Connection, jobs: list, parts: list, timelines: list, prints: list) -> None:
    for sql, batch in ((INSERT_JOB, jobs), (INSERT_PART, parts), (INSERT_TIMELINE, timelines),
                       (INSERT_FOOTPRINT, prints)):  # fmt: skip
        conn.executemany(sql, batch)
        batch.clear()


def _shifted(points: list, days: int) -> list:
    import dataclasses
    import datetime as dt

    delta = dt.timedelta(days=days)
    return [dataclasses.replace(p, start=p.start + delta, end=p.end + delta, forecast=False) for p in points]


def _timed_jobs() -> list[Job]:
    gpus = [gpu(i, "NVIDIA H100 80GB HBM3") for i in range(4)]
    watts = {g["uuid"]: (550.0, "measured") for g in gpus}
    day = {
        "rows": 8640,
        "step_s": 10.0,
        "start": DAY - 30 * HOUR,
        "gpus": gpus,
        "gpu_w": watts,
        "partition": "gpu",
    }
    one = [Job(TIMED["gpu-1-node"], user="user10001", uid=10_001, **day)]
    four = [
        Job(TIMED["gpu-4-nodes"], node=f"gpu{n:03d}", user="user10001", uid=10_001, **day) for n in range(4)
    ]
    return one + four


def cached_database(jobs: int, rebuild: bool) -> Path:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"jobview-{jobs}-g{GENERATOR}-s{migrations.latest()}.db"
    if rebuild or not path.exists():
        for stale in CACHE.glob(f"{path.name}*"):
            stale.unlink()
        started = time.perf_counter()
        build(path.with_suffix(".tmp"), jobs)
        path.with_suffix(".tmp").rename(path)
        print(f"built {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


def _times(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(argv, env=env, check=True, capture_output=True)  # warm the page cache and .pyc files
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def measure(database: Path, runs: int) -> dict[str, Any]:
    work = CACHE / f"run-{os.getpid()}"
    work.mkdir()
    sock = work / "query.sock"
    direct, service = work / "direct.yaml", work / "service.yaml"
    direct.write_text(f"database:\n  url: sqlite:///{database}\nvisibility:\n  mode: own\n")
    service.write_text(direct.read_text() + f"  socket: {sock}\n")
    jobcarbon = shutil.which("jobcarbon") or sys.exit("jobcarbon is not installed (pip install -e .)")
    env = {"PATH": os.defpath, "JOBCARBON_CONFIG": str(direct)}
    results: dict[str, Any] = {"python_pass": summary_ms(_times([sys.executable, "-c", "pass"], env, runs))}
    results["jobcarbon_version"] = summary_ms(_times([jobcarbon, "--version"], env, runs))
    for name, job_id in TIMED.items():
        results[f"direct_{name}"] = summary_ms(_times([jobcarbon, str(job_id)], env, runs))
    server = subprocess.Popen(
        [jobcarbon, "serve", "--config", str(service)], stdout=subprocess.PIPE, text=True
    )
    try:
        server.stdout.readline()  # "listening on ..."
        env["JOBCARBON_CONFIG"] = str(service)
        for name, job_id in TIMED.items():
            results[f"socket_{name}"] = summary_ms(_times([jobcarbon, str(job_id)], env, runs))
        listing = [jobcarbon, "jobs", "-u", "user10001", "-S", "2025-01-01", "-E", "2026-01-02"]
        results["socket_jobs_one_user_year"] = summary_ms(_times(listing, env, runs))
        everyone = [jobcarbon, "jobs", "-a", "-S", "2025-12-25", "-E", "2026-01-01"]  # ~19,000 jobs
        results["socket_jobs_all_users_week"] = summary_ms(_times(everyone, env, runs))
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.jobview", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--rebuild", action="store_true", help="regenerate the cached database")
    args = parser.parse_args(argv)
    database = cached_database(args.jobs, args.rebuild)
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("jobs", "job_parts")}  # noqa: S608
    results = {"database": str(database), "size_mb": round(database.stat().st_size / 1e6), **counts}
    results["timings"] = measure(database, args.runs)
    results["target_p50_ms"] = TARGET_MS
    print(json.dumps(results, indent=1))
    for name, timing in results["timings"].items():
        print(f"{name:<28} p50 {timing['p50_ms']:7.1f} ms   p95 {timing['p95_ms']:7.1f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
