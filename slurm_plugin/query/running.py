"""`jobcarbon <jobid>` on a running job: its figures so far, and a projection to its time limit.

Built from the newest snapshot of each of its parts (`running_parts`, see snapshots.py); the
projection assumes the job keeps the power of its last 15 minutes and the intensity it has seen.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from slurm_plugin import figures
from slurm_plugin.query import job_summary, visibility
from slurm_plugin.query.job_summary import JobNotFound
from slurm_plugin.storage import readonly, schema
from slurm_plugin.storage.readonly import Reader
from slurm_plugin.times import epoch_s

RECENT_S = 900.0


def summary(
    reader: Reader, scope: visibility.Scope, job_id: int, cluster: str | None = None, run: str | None = None
) -> dict[str, Any]:
    """The summary so far of a running job the scope may see (its run `run`, if given); JobNotFound
    otherwise."""
    found = visibility.visible(readonly.running_parts(reader, job_id), scope, cluster)
    rows = [r for r in found if run is None or r["run"] == run]
    if not rows:
        raise JobNotFound(job_id, run)
    latest = (rows[-1]["cluster"], rows[-1]["restart_count"], rows[-1]["run"])
    records = [
        (json.loads(zlib.decompress(r["record_zlib"])), json.loads(r["footprint_json"] or "null"))
        for r in rows
        if (r["cluster"], r["restart_count"], r["run"]) == latest
    ]
    parts = [_part(record, footprint) for record, footprint in records]
    first = records[0][0]
    job = {
        "cluster": first["cluster"],
        "job_id": first["job_id"],
        "restart_count": first["restart_count"],
        "run": latest[2],
        "user_name": first["user"],
        "uid": first["uid"],
        "account": first["account"],
        "partition": first["partition"],
        "start_s": min(p["start_s"] for p in parts),
        "end_s": max(p["end_s"] for p in parts),
        **_facts(first.get("slurm") or {}),
    }
    around = job_summary.intensity_around(reader, job, parts)
    document = job_summary.build(job, parts, around, state="running")
    document["progress"] = {"recent_power_w": recent_power_w(parts)}
    return document


def job_or_running(
    reader: Reader, scope: visibility.Scope, job_id: int, cluster: str | None, run: str | None = None
) -> dict[str, Any]:
    """The newest run of the id (or run `run`): a finished job's summary, or a running job's so far when
    that started later (Slurm gave the id again), the finished one then listed among its other runs."""
    try:
        finished = job_summary.job_summary(reader, scope, job_id, cluster, run)
    except JobNotFound:
        return summary(reader, scope, job_id, cluster, run)
    if run is not None:
        return finished
    try:
        live = summary(reader, scope, job_id, cluster)
    except JobNotFound:
        return finished
    if live["run"] == finished["run"] or live["start"] <= finished["start"]:
        return finished
    shown = {key: finished[key] for key in ("cluster", "restart_count", "run", "start")}
    live["other_runs"] = [shown, *finished["other_runs"]]
    return live


def _facts(slurm: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's `slurm` block (its limits and ids; no state yet) as the jobs row's columns."""
    renamed = {"slurm_state": "state", "exit_signal": "signal"}
    facts = {name: slurm.get(renamed.get(name, name)) for name, _ in schema.JOB_FACTS}
    facts["submit_s"] = epoch_s(slurm["submit"]) if slurm.get("submit") else None
    return facts


def _part(record: dict[str, Any], footprint: dict[str, Any] | None) -> dict[str, Any]:
    """A running record in the shape of a stored part (readonly.job_parts)."""
    origin = epoch_s(record["timeline"]["origin"])
    energy = record["energy"]
    part: dict[str, Any] = {
        "node": record["node"],
        "start_s": epoch_s(record["start"]),
        "end_s": epoch_s(record["end"]),
        "elapsed_s": record["elapsed_s"],
        "cpu_count": record["allocated_cpus"]["count"],
        "gpus": record["gpus"],
        "total_j": energy["total_joules"],
        "coverage_fraction": record["coverage"]["fraction"],
        "status": "running",
        "partial_reasons": record["partial_reasons"],
        "notes": record["notes"],
        "footprint": footprint,
        "timeline": [(origin + r[0], origin + r[1], *r[2:]) for r in record["timeline"]["rows"]],
        "gpu_devices": (energy.get("gpu") or {}).get("devices") or {},
        "energy_by_method": readonly.by_method(energy),
        "efficiency": record.get("efficiency"),
    }
    for component in ("cpu", "dram", "gpu"):
        part[f"{component}_j"] = (energy[component] or {}).get("joules")
        part[f"{component}_method"] = (energy[component] or {}).get("method")
    return part


def recent_power_w(parts: list[dict[str, Any]]) -> float | None:
    """The job's power over its last 15 minutes of samples (all of them for a younger job)."""
    total = 0.0
    for part in parts:
        rows = part["timeline"]
        if not rows:
            continue
        recent = [r for r in rows if r[0] >= rows[-1][1] - RECENT_S]
        window = sum(r[1] - r[0] for r in recent)
        if window > 0:
            total += sum(sum(j for j in r[2:] if j is not None) for r in recent) / window
    return round(total, 3) if total else None


def project(document: dict[str, Any], time_limit_s: float | None) -> dict[str, Any] | None:
    """Energy and CO2e at the time limit, if the job keeps its recent power and intensity."""
    power = (document.get("progress") or {}).get("recent_power_w")
    elapsed = document["elapsed_s"]
    if not power or time_limit_s is None or time_limit_s <= elapsed:
        return None
    carbon = document.get("carbon") or {}
    it_j = carbon.get("it_energy_j") or document["energy"]["total_j"]
    extra_j = power * (time_limit_s - elapsed)
    ratio = (it_j + extra_j) / it_j if it_j else 1.0
    return {
        "time_limit_s": time_limit_s,
        "recent_power_w": power,
        "energy_j": round(it_j + extra_j, 3),
        "co2e_g": figures.kept((carbon.get("co2e_g") or 0.0) * ratio),
    }
