"""Accounting databases with realistic jobs for the query tests, built through the real code paths.

Records come from `record.build` on hand-made journals (as the epilog makes them) and are stored by
`Store.add_part` with the footprint `join.accountant` gives them, exactly as `jobcarbon
ingest` does; on either backend, by URL. Power follows a smooth daily-looking curve so that
sparklines have a shape.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from slurm_plugin import record
from slurm_plugin.accounting import join
from slurm_plugin.config import Accounting
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.node.journal import Journal
from slurm_plugin.storage import Store

DAY = 1767225600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0
SETTINGS = Accounting(zone="DE", pue=1.2)


def gpu(
    index: int, model: str = "NVIDIA A100-SXM4-40GB", parent: str | None = None, share: float = 1.0
) -> dict:
    uuid = f"{'MIG' if parent else 'GPU'}-{index:08x}-1111-4222-8333-{index:012x}"
    return {
        "uuid": uuid,
        "model": model,
        "pci_bus_id": f"00000000:{7 + index:02X}:00.0",
        "minor": index,
        "parent_uuid": parent,
        "share": share,
    }


@dataclass
class Job:
    """One job run on one node, as its journal would have recorded it."""

    job_id: int
    node: str = "node001"
    user: str = "alice"
    uid: int = 1000
    account: str | None = "physics"
    partition: str | None = "batch"
    start: float = DAY + 10 * HOUR
    rows: int = 60
    step_s: float = 60.0
    cpu_w: float = 180.0
    dram_w: float = 12.0
    cpu_method: str = "measured"
    dram_method: str = "apportioned"
    gpus: list[dict[str, Any]] = field(default_factory=list)
    gpu_w: dict[str, tuple[float, str]] = field(default_factory=dict)  # uuid -> (watts, method)
    gpu_util: dict[str, int] = field(default_factory=dict)  # uuid -> utilisation % read on every tick
    skip: range = range(0)  # intervals the sampler lost
    partial_reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    restart_count: int = 0
    cluster: str = "hpc"
    slurm: dict[str, Any] | None = None  # the record's `slurm` block (node/jobfacts.py)
    cpu_used: float | None = None  # the share of its 4 cores the job kept busy (cgroup readings)
    mem_b: int = 0
    run: str | None = None  # the run its prolog fixed (slurm_plugin/runs.py); None: a record from before runs

    def record(self) -> dict[str, Any]:
        job = {
            **({"run": self.run} if self.run else {}),
            "cluster": self.cluster,
            "job_id": self.job_id,
            "restart_count": self.restart_count,
            "node": self.node,
            "user": self.user,
            "uid": self.uid,
            "gid": self.uid,
            "account": self.account,
            "partition": self.partition,
        }
        header = {
            "type": "header",
            "version": 1,
            "job": job,
            "start": self.start,
            "gpus": self.gpus,
            "node_info": {},
        }
        intervals = [self._interval(i) for i in range(self.rows) if i not in self.skip]
        journal = Journal(header, intervals, notes=list(self.notes))
        end = self.start + self.rows * self.step_s
        return record.build(journal, end, list(self.partial_reasons), slurm=self.slurm)

    def _interval(self, i: int) -> dict[str, Any]:
        load = 0.6 + 0.4 * math.sin(i / max(self.rows, 1) * 2 * math.pi) ** 2  # a busy middle
        t0 = self.start + i * self.step_s
        entry: dict[str, Any] = {"type": "interval", "t0": t0, "t1": t0 + self.step_s, "cpuset": [0, 1, 2, 3]}
        if self.cpu_used is not None:
            entry.update(cpu_s=self.cpu_used * 4 * self.step_s, cpus=4, mem_b=self.mem_b)
        if self.cpu_w:
            entry["cpu"] = [round(self.cpu_w * load * self.step_s, 3), self.cpu_method]
            entry["dram"] = [round(self.dram_w * self.step_s, 3), self.dram_method]
        if self.gpu_w:
            entry["gpu"] = {u: [round(w * load * self.step_s, 3), m] for u, (w, m) in self.gpu_w.items()}
        if self.gpu_util:
            entry["gpu_use"] = {u: [pct, 1024 if pct else 0] for u, pct in self.gpu_util.items()}
        return entry


def day_series(zone: str = "DE", measured_until: float = DAY + 24 * HOUR) -> list[IntensityPoint]:
    """Hourly slots over 2026-01-01 (UTC): cleanest around 13:00, dirtiest around 19:00; forecasts
    (from `measured_until` on) are 10% higher than an actual would be."""
    points = []
    for hour in range(26):
        start = DAY + hour * HOUR
        g = round(300 + 120 * math.cos((hour - 19) / 24 * 2 * math.pi) + 15 * math.sin(hour), 1)
        forecast = start >= measured_until
        points.append(
            IntensityPoint(
                zone=zone,
                start=dt.datetime.fromtimestamp(start, dt.UTC),
                end=dt.datetime.fromtimestamp(start + HOUR, dt.UTC),
                g_per_kwh=round(g * 1.1, 1) if forecast else g,
                source="electricitymaps",
                scope="lifecycle",
                forecast=forecast,
            )
        )
    return points


def store_jobs(store: Store, jobs: list[Job], settings: Accounting = SETTINGS) -> list[int]:
    """Store each job's record and compute its footprint; the part ids."""
    ids = []
    for job in jobs:
        document = job.record()
        part_id = store.add_part(document, account=join.accountant(store, settings))
        assert part_id is not None
        ids.append(part_id)
    return ids


def open_store(url: str) -> Store:
    return Store.open(url, busy_timeout_s=5.0)


def fill(url: str, jobs: list[Job], settings: Accounting = SETTINGS) -> str:
    """The database at `url` with a day of DE intensity and `jobs` stored; its url."""
    store = open_store(url)
    store.upsert_intensity(day_series())
    store_jobs(store, jobs, settings)
    store.close()
    return url


# The fixtures of tests/fixtures/jobview: one scenario per golden file.
def scenarios() -> dict[str, tuple[list[Job], Accounting]]:
    a100 = [gpu(0), gpu(1)]
    h100 = [gpu(4, "NVIDIA H100 80GB HBM3")]
    parent = gpu(9, "NVIDIA A100-SXM4-80GB")
    mig = gpu(10, "NVIDIA A100-SXM4-80GB MIG 3g.40gb", parent=parent["uuid"], share=3 / 7)
    return {
        "single-node": ([Job(101)], SETTINGS),
        "multi-node": (
            [
                Job(102, node=n, start=DAY + 11 * HOUR, rows=120, cpu_w=220.0)
                for n in ("node001", "node002", "node003")
            ],
            SETTINGS,
        ),
        "gpu": (
            [
                Job(
                    103,
                    partition="gpu",
                    gpus=[*a100, *h100],
                    gpu_w={
                        a100[0]["uuid"]: (300.0, "measured"),
                        a100[1]["uuid"]: (280.0, "measured"),
                        h100[0]["uuid"]: (550.0, "integrated"),
                    },
                    rows=90,
                )
            ],
            SETTINGS,
        ),
        "mig-estimated": (
            [
                Job(
                    104,
                    partition="gpu",
                    gpus=[mig],
                    gpu_w={mig["uuid"]: (120.0, "estimated")},
                    start=DAY + 3 * HOUR,
                )
            ],
            SETTINGS,
        ),
        "partial": (
            [
                Job(
                    105,
                    skip=range(20, 35),
                    partial_reasons=["sampler restarted at 2026-01-01T16:35:00.000Z: agent killed"],
                    notes=["GPU 1 has no NVML handle"],
                    start=DAY + 16 * HOUR,
                )
            ],
            SETTINGS,
        ),
        "fallback-intensity": (
            [Job(106, account="chemistry", user="bob", uid=1001)],
            Accounting(zone="FR", pue=1.4),
        ),
    }


def build_scenarios(url: str) -> dict[str, int]:
    """A database holding every scenario (and DE's intensity series); scenario name -> job id."""
    store = open_store(url)
    try:
        store.upsert_intensity(day_series(measured_until=DAY + 11.5 * HOUR))
        ids = {}
        for name, (jobs, settings) in scenarios().items():
            store_jobs(store, jobs, settings)
            ids[name] = jobs[0].job_id
        return ids
    finally:
        store.close()
