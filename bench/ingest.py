"""Ingest throughput: epilogs delivering records at once into one SQLite or PostgreSQL database.

`python3 -m bench.ingest [--backend sqlite|postgresql] [--runs 1] [--processes 16] [--records 100]
[--rows 360] [--fsync] [--prepared]`. PostgreSQL is the loopback server of testbed/postgres.py (root; a
fresh schema per run, the password from its file as `database.password_file`). Each
process writes its own records (an hour of 10 s intervals on one node, the shape `record.build` gives a
real journal) to its own outbox, waits for the others, then runs the node deliverer on it
(`delivery.deliver_outbox`: one connection per pass, a footprint per record), as a node does after
its jobs. Prints records/s over the wall time from the common start to the last commit, and the
deliverers' CPU time (user + system) per record; with several runs, the median run and every run's rate.

`--prepared` measures what the database server sustains when the deliverers' own work is not on its
CPUs, as on a cluster, where it runs on the compute nodes: each process first does the node's share
(imports, reading, checking, accounting and packing its records: `ingest.prepare_batch`), all wait
for each other, then all deliver at once (`Store.open`, then `ingest.store_batch` per batch: a new
session, one statement and one commit a batch, the files removed). The rate is that second phase's, with
the first phase's CPU per record beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slurm_plugin import outbox as outbox_files
from slurm_plugin import record
from slurm_plugin.accounting.delivery import DELIVER_TIMEOUT_S, deliver_outbox
from slurm_plugin.config import Accounting, Config, Database, Paths
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.node.journal import Journal
from slurm_plugin.storage import Store, dialect
from slurm_plugin.times import utc
from testbed import postgres

if TYPE_CHECKING:  # the deliverer's database stack: imported on the clock, as `deliver_outbox` does
    from slurm_plugin.accounting.ingest import Batch

START = 1767225600.0  # 2026-01-01T00:00:00Z
ZONE = "DE"  # the deliverers account with its hourly series, as a site with a configured zone does
GPU_UUID = "GPU-5a3e1c2d-8f4b-4e6a-9d7c-1b2a3c4d5e6f"
TARGETS_PER_S = {dialect.SQLITE: 500, dialect.POSTGRESQL: 1000}  # issues 3 (16 deliverers) and 6 (64)


def synthetic_record(job_id: int, node: str, rows: int, rng: random.Random) -> dict[str, Any]:
    """A finished-job record of `rows` 10 s intervals with noisy CPU, DRAM and GPU energy."""
    job = {
        "cluster": "bench",
        "job_id": job_id,
        "restart_count": 0,
        "node": node,
        "user": "bench",
        "uid": 1000,
        "gid": 1000,
        "account": "bench",
        "partition": "gpu",
    }
    gpu = {"uuid": GPU_UUID, "model": "NVIDIA H100", "pci_bus_id": "00000000:07:00.0"}
    gpu |= {"minor": 0, "parent_uuid": None, "share": 1.0}
    header = {"type": "header", "version": 1, "job": job, "start": START, "gpus": [gpu], "node_info": {}}
    intervals = [
        {
            "type": "interval",
            "t0": START + 10 * i,
            "t1": START + 10 * (i + 1),
            "cpu": [rng.uniform(500, 1500), "apportioned"],
            "dram": [rng.uniform(20, 60), "apportioned"],
            "gpu": {GPU_UUID: [rng.uniform(2000, 7000), "measured"]},
            "cpuset": list(range(16)),
        }
        for i in range(rows)
    ]
    return record.build(Journal(header, intervals), START + 10 * rows, [])


def _hourly_intensity(rows: int) -> list[IntensityPoint]:
    """The zone's hourly series from a day before the records' start to a day after their end."""
    rng, hour = random.Random(0), dt.timedelta(hours=1)
    first = utc(START) - dt.timedelta(days=1)
    hours = 48 + math.ceil(rows * 10 / 3600)
    return [
        IntensityPoint(
            ZONE,
            first + h * hour,
            first + (h + 1) * hour,
            rng.uniform(100, 500),
            "electricitymaps",
            "lifecycle",
        )
        for h in range(hours)
    ]


def _silent(level: str, message: str) -> None:
    """Failures are counted, not printed, so the timing is not a terminal benchmark."""


def _deliverer(
    index: int, args: argparse.Namespace, scratch: str, database: Database, barriers: Any, results: Any
) -> None:
    """One epilog stream: write its records, wait for the common start, deliver them all."""
    rng = random.Random(index)
    outbox = Path(scratch) / f"outbox-{index:02d}"
    paths = Paths(outbox=outbox, quarantine=Path(scratch) / "quarantine")
    config = Config(paths=paths, database=database, accounting=Accounting(zone=ZONE))
    for n in range(args.records):
        outbox_files.write(outbox, synthetic_record(n, f"node{index:03d}", args.rows, rng), fsync=args.fsync)
    barriers[0].wait(timeout=300)
    began, cpu = time.time(), _cpu_s()
    if args.prepared:
        batches, prepare_s = _prepare(config), _cpu_s() - cpu
        barriers[1].wait(timeout=300)
        began, cpu = time.time(), _cpu_s()
        delivered = _store(config, batches)
    else:
        delivered, prepare_s = deliver_outbox(config, _silent), 0.0
    results.put((began, time.time(), delivered, _cpu_s() - cpu, prepare_s))


def _cpu_s() -> float:
    used = os.times()
    return used.user + used.system


def _prepare(config: Config) -> list[Batch]:
    """The node's share of delivering its outbox, as `deliver_outbox` does it, batch by batch."""
    from slurm_plugin.accounting import ingest, join

    store = _open(config)
    try:
        account = join.accountant(store, config.accounting)
        files = outbox_files.pending(config.paths.outbox)
        return [
            ingest.prepare_batch(store, files[start : start + ingest.BATCH], config.paths.quarantine, account)
            for start in range(0, len(files), ingest.BATCH)
        ]
    finally:
        store.close()


def _store(config: Config, batches: list[Batch]) -> int:
    """The delivery proper: a session of its own, then each batch in one statement and commit."""
    from slurm_plugin.accounting import ingest

    store = _open(config)
    try:
        outcomes = [o for batch in batches for o in ingest.store_batch(store, batch, config.paths.quarantine)]
    finally:
        store.close()
    return outcomes.count(ingest.Outcome.STORED)


def _open(config: Config) -> Store:
    database = config.database
    return Store.open(database.url, DELIVER_TIMEOUT_S, False, database.password_file)


def _database(backend: str, scratch: str) -> tuple[Database, Any]:
    """A fresh database on the backend, and how to drop it afterwards."""
    if backend == dialect.SQLITE:
        return Database(url=f"sqlite:///{scratch}/bench.db", busy_timeout_s=10.0), lambda: None
    server = postgres.ensure_server()
    name = f"bench_ingest_{os.getpid()}_{int(time.time())}"
    postgres.create_schema(name)
    database = Database(url=postgres.schema_url(server, name), password_file=str(server.password_file))
    return database, lambda: postgres.drop_schema(name)


def _server_cpu_s(backend: str) -> float:
    if backend != dialect.POSTGRESQL:
        return 0.0
    return postgres.server_cpu_s(postgres.installed_version() or "")


def run(args: argparse.Namespace, scratch: str) -> dict[str, Any]:
    """Start the deliverers together and measure records/s from the common start to the last commit."""
    database, drop = _database(args.backend, scratch)
    try:
        return _run(args, scratch, database)
    finally:
        drop()


def _run(args: argparse.Namespace, scratch: str, database: Database) -> dict[str, Any]:
    # the schema and the zone's series around the records, as a deployed site has them
    store = Store.open(database.url, 10.0, password_file=database.password_file)
    try:
        store.upsert_intensity(_hourly_intensity(args.rows))
    finally:
        store.close()
    context = multiprocessing.get_context("spawn")
    # With --prepared this process waits at the second barrier too, to read the server's CPU time there.
    barriers, results = (
        (context.Barrier(args.processes), context.Barrier(args.processes + 1)),
        context.Queue(),
    )
    workers = [
        context.Process(target=_deliverer, args=(i, args, scratch, database, barriers, results))
        for i in range(args.processes)
    ]
    for worker in workers:
        worker.start()
    server_before = _server_cpu_s(args.backend)
    if args.prepared:
        barriers[1].wait(timeout=600)
        server_before = _server_cpu_s(args.backend)
    reports = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    server_s = _server_cpu_s(args.backend) - server_before
    began, ended = min(r[0] for r in reports), max(r[1] for r in reports)
    delivered = sum(r[2] for r in reports)
    cpu_s, prepare_s = sum(r[3] for r in reports), sum(r[4] for r in reports)
    total = args.processes * args.records
    target = TARGETS_PER_S[args.backend]
    return {
        "backend": args.backend,
        "prepared": args.prepared,
        "processes": args.processes,
        "records": total,
        "timeline_rows": args.rows,
        "delivered": delivered,
        "kept": total - delivered,
        "wall_s": round(ended - began, 3),
        "records_per_s": round(delivered / (ended - began), 1),
        "cpu_ms_per_record": round(cpu_s * 1000 / max(delivered, 1), 2),
        # --prepared: the node's share, done before the timed delivery
        "prepare_cpu_ms_per_record": round(prepare_s * 1000 / max(delivered, 1), 2)
        if args.prepared
        else None,
        # The database server's share (PostgreSQL only; SQLite works inside the deliverers): on a real
        # cluster the deliverers run on the compute nodes and only this is spent on the server.
        "server_cpu_ms_per_record": round(server_s * 1000 / max(delivered, 1), 2) if server_s else None,
        "target_per_s": target,
        "meets_target": delivered / (ended - began) >= target and delivered == total,
    }


def measure(
    scratch: Path,
    runs: int = 3,
    processes: int = 16,
    records: int = 100,
    rows: int = 360,
    fsync: bool = False,
    backend: str = dialect.SQLITE,
    prepared: bool = False,
) -> dict[str, Any]:
    """The median of `runs` runs by records/s (a noisy machine varies run to run), with every run's rate."""
    args = argparse.Namespace(
        processes=processes, records=records, rows=rows, fsync=fsync, backend=backend, prepared=prepared
    )
    results = []
    for index in range(runs):
        directory = scratch / f"ingest-{index}"
        directory.mkdir(parents=True)
        results.append(run(args, str(directory)))
        shutil.rmtree(directory)  # its unwritten pages go with it rather than slow what runs next
    median = sorted(results, key=lambda r: r["records_per_s"])[(runs - 1) // 2]
    return {**median, "runs": runs, "records_per_s_runs": [r["records_per_s"] for r in results]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=(dialect.SQLITE, dialect.POSTGRESQL), default=dialect.SQLITE)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--records", type=int, default=100, help="records per process")
    parser.add_argument("--rows", type=int, default=360, help="timeline rows per record")
    parser.add_argument("--fsync", action="store_true", help="fsync record files as the epilog does")
    parser.add_argument(
        "--prepared",
        action="store_true",
        help="time the delivery alone, the node's share of the work done first",
    )
    parser.add_argument(
        "--scratch", help="where to make the scratch directory for databases and outboxes (default: /tmp)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jobcarbon-ingest-", dir=args.scratch) as scratch:
        result = measure(
            Path(scratch),
            args.runs,
            args.processes,
            args.records,
            args.rows,
            args.fsync,
            args.backend,
            args.prepared,
        )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
