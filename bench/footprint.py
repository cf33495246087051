"""Footprint cost of a week-long job: `join.compute_part` on a stored part, end to end.

`python3 -m bench.footprint [--runs 20] [--days 7]`. Stores one part of a job that
ran a week at 10 s sampling (60,480 timeline intervals, built by `record.build` like a real journal's)
and 168 hourly intensity points covering it, then times `compute_part`: the part, its timeline and
the intensity read from SQLite, the footprint computed. Also times the pieces and, for reports that
read rows, `Store.timeline`. Wall times are p50/p95/max over the runs; CPU is the median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ingest import START, synthetic_record
from bench.stats import summary_ms
from slurm_plugin.accounting import footprint, join
from slurm_plugin.config import Accounting, PueRule
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.storage import Store
from slurm_plugin.times import utc

TARGET_MS = 50
INTERVAL_S = 10  # bench.ingest.synthetic_record's sampling
ZONE = "DE"
SETTINGS = Accounting(zone=ZONE, pue=1.3, pue_rules=(PueRule(1.2, partition="gpu"),))


def _stored_week(scratch: Path, days: float) -> tuple[Store, int, int]:
    """A store holding one part of `days` at 10 s intervals and hourly intensity over it."""
    store = Store.open(f"sqlite:///{scratch / 'footprint.db'}", 10.0)
    intervals = round(days * 86400 / INTERVAL_S)
    part_id = store.add_part(synthetic_record(1, "node001", intervals, random.Random(7)))
    assert part_id is not None
    base = utc(START)
    hours = round(days * 24)
    rng = random.Random(8)
    slot = dt.timedelta(hours=1)
    points = [
        IntensityPoint(ZONE, base + h * slot, base + (h + 1) * slot, rng.uniform(100, 500), "em", "lifecycle")
        for h in range(hours)
    ]
    store.upsert_intensity(points)
    return store, part_id, intervals


def _timed(runs: int, work: Callable[[], object]) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of `runs` calls, after one warm-up call."""
    work()
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return walls, cpus


def _cpu_ms(cpus: list[float]) -> float:
    return round(statistics.median(cpus) * 1000, 2)


def measure(runs: int = 20, days: float = 7, scratch: Path | None = None) -> dict[str, Any]:
    """Time the footprint of a stored week-long part; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="jobcarbon-footprint-", dir=scratch) as directory:
        store, part_id, intervals = _stored_week(Path(directory), days)
        try:
            return _measure(store, part_id, intervals, runs)
        finally:
            store.close()


def _measure(store: Store, part_id: int, intervals: int, runs: int) -> dict[str, Any]:
    columns = store.timeline_columns(part_id)
    it = footprint.it_columns(*columns)
    slots = footprint.slots_from_points(store.intensity(ZONE, *_span(store, part_id)))
    fallback = join.fallback(SETTINGS)
    pieces = {
        "read_timeline_columns": lambda: store.timeline_columns(part_id),
        "it_energy": lambda: footprint.it_columns(*columns),
        "compute_columns": lambda: footprint.compute_columns(*it, slots, fallback, lambda _t: 1.2),
        "read_timeline_rows": lambda: store.timeline(part_id),
    }
    walls, cpus = _timed(runs, lambda: join.compute_part(store, part_id, SETTINGS))
    result = join.compute_part(store, part_id, SETTINGS)
    p50_ms = round(statistics.median(walls) * 1000, 2)
    return {
        "intervals": intervals,
        "intensity_slots": len(slots),
        "runs": runs,
        "compute_part": {**summary_ms(walls), "cpu_p50_ms": _cpu_ms(cpus)},
        "pieces_p50_ms": {
            name: round(statistics.median(_timed(runs, work)[0]) * 1000, 2) for name, work in pieces.items()
        },
        "co2e_g": round(result.co2e_g, 3),
        "target_ms": TARGET_MS,
        "meets_target": p50_ms <= TARGET_MS,
    }


def _span(store: Store, part_id: int) -> tuple[dt.datetime, dt.datetime]:
    part = store.part(part_id)
    return part["start"] - join.SLOT_MARGIN, part["end"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--days", type=float, default=7)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.runs, args.days), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
