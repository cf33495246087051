"""The finished-job record: one JSON document per job run per node, written atomically to the outbox.

Its shape is `record_schema.json` (documented in docs/record.md). The record is built only from the
journal, so the sampler and the epilog's crash path produce the same document from the same samples.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slurm_plugin import __version__
from slurm_plugin.node.counters import Method
from slurm_plugin.node.journal import Journal
from slurm_plugin.safefile import atomic_write, ensure_dir

SCHEMA = "jobcarbon/job-node-record/1"
RUNNING_DIR = "running"  # snapshots of running jobs, replaced until the finished record arrives
# Least direct last: a component's overall method is the least direct one among its intervals.
METHOD_ORDER = [Method.MEASURED, Method.INTEGRATED, Method.APPORTIONED, Method.ESTIMATED]


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Component:
    """Running total of one component's joules, split by method."""

    def __init__(self) -> None:
        self.by_method: dict[str, float] = {}

    def add(self, part: list[Any] | None, fraction: float = 1.0) -> float | None:
        if not part:
            return None
        joules, method = float(part[0]) * fraction, str(part[1])
        self.by_method[method] = self.by_method.get(method, 0.0) + joules
        return joules

    def summary(self) -> dict[str, Any] | None:
        if not self.by_method:
            return None
        weakest = max(self.by_method, key=lambda m: METHOD_ORDER.index(Method(m)))
        return {
            "joules": round(sum(self.by_method.values()), 3),
            "method": weakest,
            "by_method": {k: round(v, 3) for k, v in sorted(self.by_method.items())},
        }


def build(
    journal: Journal, end_s: float, partial_reasons: list[str], running: bool = False
) -> dict[str, Any]:
    """The record for a journal whose job ended at `end_s` (or, `running`, a snapshot up to then);
    `partial_reasons` mark lost sampling."""
    header = journal.header
    start_s = float(header["start"])
    cpu, dram = _Component(), _Component()
    gpus: dict[str, _Component] = {}
    rows: list[list[float | None]] = []
    covered = 0.0
    cpus: list[int] = []
    for entry in journal.intervals:
        cpus = entry.get("cpuset", cpus)
        raw0, raw1 = float(entry["t0"]), float(entry["t1"])
        t0, t1 = max(raw0, start_s), min(raw1, end_s)
        if t1 <= t0:
            continue
        # An interval reaching past the job's end keeps only the share of its energy inside the job.
        inside = (t1 - t0) / (raw1 - raw0)
        cpu_j, dram_j = cpu.add(entry.get("cpu"), inside), dram.add(entry.get("dram"), inside)
        gpu_j = None
        for uuid, part in (entry.get("gpu") or {}).items():
            joules = gpus.setdefault(uuid, _Component()).add(part, inside)
            gpu_j = (gpu_j or 0.0) + (joules or 0.0)
        if entry.get("cpu") is not None:
            covered += t1 - t0
        rows.append([round(t0 - start_s, 3), round(t1 - start_s, 3), *map(_j, (cpu_j, dram_j, gpu_j))])
    reasons = list(partial_reasons) + (["journal has a torn or corrupt line"] if journal.torn else [])
    reasons += [f"sampler restarted at {_iso(float(r['t']))}: {r.get('reason', '')}" for r in journal.resumes]
    document = _document(journal, start_s, end_s, covered, rows, cpu, dram, gpus, reasons)
    if running:
        document["status"] = "running"
    document["allocated_cpus"] = {"count": len(cpus), "list": _cpulist(cpus)}
    return document


def _cpulist(cpus: list[int]) -> str:
    """Kernel cpu-list notation ("0-3,8") for a sorted list of CPU numbers."""
    ranges: list[str] = []
    for cpu in cpus:
        if ranges and cpu == int(ranges[-1].rsplit("-", 1)[-1]) + 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)


def _j(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _document(
    journal: Journal,
    start_s: float,
    end_s: float,
    covered: float,
    rows: list[list[float | None]],
    cpu: _Component,
    dram: _Component,
    gpus: dict[str, _Component],
    reasons: list[str],
) -> dict[str, Any]:
    header = journal.header
    job = header["job"]
    wall = max(end_s - start_s, 0.0)
    devices = {uuid: c.summary() for uuid, c in gpus.items() if c.summary()}
    energy: dict[str, Any] = {"cpu": cpu.summary(), "dram": dram.summary(), "gpu": _gpu_total(devices)}
    total = sum(part["joules"] for part in energy.values() if part)
    return {
        "schema": SCHEMA,
        "cluster": job["cluster"],
        "job_id": job["job_id"],
        "restart_count": job["restart_count"],
        "node": job["node"],
        "user": job["user"],
        "uid": job["uid"],
        "gid": job["gid"],
        "account": job.get("account"),
        "partition": job.get("partition"),
        "start": _iso(start_s),
        "end": _iso(end_s),
        "elapsed_s": round(wall, 3),
        "gpus": header.get("gpus", []),
        "energy": {**energy, "total_joules": round(total, 3)},
        "timeline": {
            "origin": _iso(start_s),
            "columns": ["start_s", "end_s", "cpu_j", "dram_j", "gpu_j"],
            "rows": rows,
        },
        "coverage": {
            "fraction": round(min(covered / wall, 1.0), 4) if wall > 0 else 0.0,
            "covered_s": round(covered, 3),
            "samples": len(rows),
        },
        "status": "partial" if reasons else "complete",
        "partial_reasons": reasons,
        "notes": journal.notes,
        "node_info": header.get("node_info", {}),
        "software": {"name": "jobcarbon", "version": __version__},
    }


def _gpu_total(devices: dict[str, Any]) -> dict[str, Any] | None:
    if not devices:
        return None
    merged = _Component()
    for summary in devices.values():
        for method, joules in summary["by_method"].items():
            merged.add([joules, method])
    total = merged.summary()
    return {**total, "devices": devices} if total else None


def filename(record: dict[str, Any]) -> str:
    return f"{record['cluster']}_{record['job_id']}_{record['restart_count']}_{record['node']}.json"


def write(outbox: Path, record: dict[str, Any], fsync: bool = True) -> Path:
    """Write the record atomically into the outbox (a running job's snapshot into outbox/running/);
    a rewrite of the same job run replaces it."""
    ensure_dir(outbox, 0o755)
    if record["status"] == "running":
        outbox = ensure_dir(outbox / RUNNING_DIR, 0o755)
    path = outbox / filename(record)
    atomic_write(path, json.dumps(record, indent=1).encode() + b"\n", mode=0o640, fsync=fsync)
    return path
