"""A year of node ledger intervals in bench.monthly_report's database, so its reports read what a cluster of
2,000 nodes stores: each node's measured energy per interval, its jobs' part and an idle remainder.

`python3 -m bench.year_ledger [--jobs 10000000] [--accounts 200] [--months 12] [--nodes 2000]
[--interval-s 3600]`: adds, to the cached database (built first if missing), the intervals of nodes
node0000.. (the names the bench's parts carry) over the first `--months` months of 2026, cluster "bench".
An interval's jobs are the parts that overlap it, each giving it the share of its energy and core-seconds
that falls inside (spread evenly over the part); the node measured that plus an idle draw (IDLE_W), its GPU
only on nodes whose parts had one. Shares are the agent's `[job_id, restart_count, energy_j, core_s]`.
3600 s intervals make 17.5 M rows for a year; the agent's default, 300 s, would make 210 M (some 60 GB
with the copy in PostgreSQL), more than the bench host's disk. A month is one transaction, skipped when
its first interval is stored, so a rerun adds only what is missing. `add` is the same for other benches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sqlite3
import sys
import time
from pathlib import Path

from bench import monthly_report
from slurm_plugin.accounting import months as calendar
from slurm_plugin.storage import schema

CLUSTER = "bench"
NODES = 2000
NCPUS = 64
IDLE_W = (150.0, 20.0, 60.0)  # cpu, dram, gpu: what a node draws beyond its jobs
YEAR_START = calendar.parse("2026-01", "UTC").start_s
INSERT = f"INSERT INTO node_intervals ({schema.NODE_INTERVAL_COLUMNS}) VALUES ({','.join('?' * 20)})"  # noqa: S608
PARTS = """SELECT j.job_id, j.restart_count, p.node, p.start_s, p.end_s, p.cpu_count, COALESCE(p.cpu_j, 0),
COALESCE(p.dram_j, 0), p.gpu_j FROM job_parts p JOIN jobs j ON j.id = p.job
WHERE j.cluster = :cluster AND p.end_s > :start AND p.end_s <= :until AND p.start_s < :end"""


def add(path: Path, months: int, nodes: int = NODES, interval_s: float = 3600.0) -> int:
    """Add the ledger of the first `months` months of 2026 to the database at `path`; the rows added."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    added = 0
    try:
        longest = conn.execute("SELECT COALESCE(MAX(end_s - start_s), 0) FROM job_parts").fetchone()[0]
        for month in range(1, months + 1):
            span = calendar.parse(f"2026-{month:02d}", "UTC")
            first = math.ceil((span.start_s - YEAR_START) / interval_s)
            last = math.ceil((span.end_s - YEAR_START) / interval_s)
            if _stored(conn, YEAR_START + first * interval_s):
                continue
            rows = _month(conn, range(first, last), nodes, interval_s, longest)
            conn.execute("BEGIN")
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
            added += len(rows)
    finally:
        conn.close()
    return added


def _stored(conn: sqlite3.Connection, t0_s: float) -> bool:
    found = "SELECT 1 FROM node_intervals WHERE cluster = ? AND node = ? AND t0_s = ?"
    return conn.execute(found, (CLUSTER, _name(0), t0_s)).fetchone() is not None


def _name(node: int) -> str:
    return f"node{node:04d}"


def _month(
    conn: sqlite3.Connection, slots: range, nodes: int, interval_s: float, longest: float
) -> list[tuple]:
    """The rows of the intervals `slots` (indices from the year's start) of every node."""
    start, end = YEAR_START + slots.start * interval_s, YEAR_START + slots.stop * interval_s
    params = {"cluster": CLUSTER, "start": start, "end": end, "until": end + longest}
    parts = sorted(conn.execute(PARTS, params))  # by job and restart: each interval's shares in order
    jobs, shares, gpus = _spread(parts, slots, nodes, interval_s)
    idle = [w * interval_s for w in IDLE_W]
    rows = []
    for n in range(nodes):
        name = _name(n)
        for slot, k in enumerate(slots, n * len(slots)):
            t0 = YEAR_START + k * interval_s
            t1 = t0 + interval_s
            cpu, dram, gpu, core = (j[slot] for j in jobs)
            shared = f"[{','.join(shares[slot])}]"
            digest = hashlib.sha256(f"{name} {t0} {shared}".encode()).hexdigest()
            measured_gpu = gpu + idle[2] if n in gpus else None
            rows.append(
                (CLUSTER, name, t0, t1, None, NCPUS, cpu + idle[0], "measured", dram + idle[1], "measured",
                 measured_gpu, cpu, dram, gpu, core, 0.0, shared, "[]", digest, t1 + 60)
            )  # fmt: skip
    return rows


def _spread(
    parts: list[tuple], slots: range, nodes: int, interval_s: float
) -> tuple[list[list[float]], list[list[str]], set[int]]:
    """Per node and slot, the parts' cpu, dram and gpu joules and core-seconds inside it, and their shares;
    the nodes with a GPU."""
    index = {_name(n): n for n in range(nodes)}
    width = len(slots)
    jobs = [[0.0] * (nodes * width) for _ in range(4)]
    shares: list[list[str]] = [[] for _ in range(nodes * width)]
    gpus = set()
    for job_id, restart, node, s, e, cores, cpu_j, dram_j, gpu_j in parts:
        n = index.get(node)
        if n is None or e <= s:
            continue
        if gpu_j is not None:
            gpus.add(n)
        for k in range(max(slots.start, int((s - YEAR_START) // interval_s)), slots.stop):
            t0 = YEAR_START + k * interval_s
            if t0 >= e:
                break
            inside = min(e, t0 + interval_s) - max(s, t0)
            slot, part = n * width + k - slots.start, inside / (e - s)
            drawn = (cpu_j * part, dram_j * part, (gpu_j or 0.0) * part, cores * inside)
            for column, value in zip(jobs, drawn, strict=True):
                column[slot] += value
            shares[slot].append(f"[{job_id},{restart},{sum(drawn[:3]):.4f},{drawn[3]:.4f}]")
    return jobs, shares, gpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--months", type=int, default=12, choices=range(1, 13))
    parser.add_argument("--nodes", type=int, default=NODES)
    parser.add_argument("--interval-s", type=float, default=3600.0)
    args = parser.parse_args(argv)
    database = monthly_report.cached(args.jobs, args.accounts, args.months)
    began = time.monotonic()
    rows = add(database, args.months, args.nodes, args.interval_s)
    wall_s = time.monotonic() - began
    size_mb = round(database.stat().st_size / 2**20)
    print(f"added {rows} intervals to {database} in {wall_s:.1f} s", file=sys.stderr)
    print(json.dumps({"database": str(database), "rows": rows, "wall_s": round(wall_s, 1), "mb": size_mb}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
