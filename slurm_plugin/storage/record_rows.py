"""How a finished-job record becomes the rows the store writes: the jobs row, the part row (the record
itself compressed, its digest, its waste and GPU-use columns), the packed timeline, and the part's key.
Pure: no connection; `store` runs the statements."""

from __future__ import annotations

import json
import time
import zlib
from datetime import datetime
from typing import Any

from slurm_plugin import record as record_contract
from slurm_plugin import runs
from slurm_plugin.storage import packed_timeline, schema
from slurm_plugin.times import iso_z

ZLIB_LEVEL = 1  # three times faster than the default for a 13% larger blob: compression is on the hot path


def epoch(moment: datetime) -> float:
    """Seconds since the epoch, as every time column holds; a naive datetime is refused, not guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} is a naive datetime; the store takes UTC-aware datetimes")
    return moment.timestamp()


def iso_epoch(text: str) -> float:
    return epoch(datetime.fromisoformat(text))


def compact_json(value: Any) -> str:
    """JSON for a column: compact, keys sorted (a stable text, so equal content compares equal)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_z(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def record_order(record: dict[str, Any]) -> tuple[str, int, int, int, str, str]:
    """The order parts are stored (and, on PostgreSQL, locked) in: a job's user before its nodes, so the
    job lock a `seen:` part takes (writer_functions) is always taken in the same order."""
    key = part_key(record)
    return (key["cluster"], key["job_id"], key["restart_count"], key["uid"], key["run"], key["node"])


def part_key(record: dict[str, Any]) -> dict[str, Any]:
    """The part's key as FIND_PART takes it: two records with the same key are the same part, delivered
    twice (the same content) or in conflict. A record of a release before runs has the legacy run."""
    key = {k: record[k] for k in ("cluster", "job_id", "restart_count", "uid", "node")}
    return {**key, "run": record.get("run", runs.LEGACY)}


def job_params(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "cluster": record["cluster"],
        "job_id": record["job_id"],
        "restart_count": record["restart_count"],
        "run": record.get("run", runs.LEGACY),
        "user_name": record["user"],
        "uid": record["uid"],
        "gid": record["gid"],
        "account": record["account"],
        "partition": record["partition"],
        "start_s": iso_epoch(record["start"]),
        "end_s": iso_epoch(record["end"]),
        **_fact_params(record.get("slurm") or {}),
    }


def _fact_params(slurm: dict[str, Any]) -> dict[str, Any]:
    """The jobs row's columns from the record's `slurm` block (all null for a record without one)."""
    renamed = {"slurm_state": "state", "exit_signal": "signal"}
    params = {name: slurm.get(renamed.get(name, name)) for name, _ in schema.JOB_FACTS}
    params["submit_s"] = iso_epoch(slurm["submit"]) if slurm.get("submit") else None
    return params


def part_params(record: dict[str, Any], raw: bytes) -> dict[str, Any]:
    energy = record["energy"]
    params: dict[str, Any] = {
        "node": record["node"],
        "run": record.get("run", runs.LEGACY),
        "start_s": iso_epoch(record["start"]),
        "end_s": iso_epoch(record["end"]),
        "elapsed_s": record["elapsed_s"],
        "cpu_count": record["allocated_cpus"]["count"],
        "cpu_list": record["allocated_cpus"]["list"],
        "gpus_json": compact_json(record["gpus"]),
        "total_j": energy["total_joules"],
        "coverage_fraction": record["coverage"]["fraction"],
        "status": record["status"],
        "partial_reasons_json": compact_json(record["partial_reasons"]),
        "notes_json": compact_json(record["notes"]),
        "software_version": record["software"]["version"],
        "record_zlib": zlib.compress(raw, ZLIB_LEVEL),
        "content_sha256": record_contract.digest(record),
        "received_at_s": time.time(),
    }
    for component in ("cpu", "dram", "gpu"):
        summary = energy[component] or {}
        params[f"{component}_j"] = summary.get("joules")
        params[f"{component}_method"] = summary.get("method")
    params.update(_use_params(record.get("efficiency")))
    return params


def _use_params(use: dict[str, Any] | None) -> dict[str, Any]:
    """The part's waste (idle GPUs + idle cores) and GPU utilisation columns from its `efficiency`
    block; null where the record has none (no cgroup reading, or a record of an earlier release)."""
    if not use:
        return dict.fromkeys(name for name, _ in schema.PART_USE)
    idle_gpu_j = use.get("idle_gpu_j", 0.0)
    sampled = [g for g in (use.get("gpus") or {}).values() if g.get("sampled_s")]
    sampled_s = sum(g["sampled_s"] for g in sampled)
    util_s = sum(g["util_mean_pct"] * g["sampled_s"] for g in sampled)
    return {
        "idle_gpu_j": idle_gpu_j,
        "waste_j": round(idle_gpu_j + use["idle_cpu_j"], 3),
        "gpu_util_pct": round(util_s / sampled_s, 2) if sampled_s else None,
        "gpu_sampled_s": round(sampled_s, 3) if sampled_s else None,
    }


def timeline_params(timeline: dict[str, Any]) -> dict[str, Any]:
    rows = timeline["rows"]
    blob = packed_timeline.encode(rows, iso_epoch(timeline["origin"]))
    return {"intervals": len(rows), "columns_f64": blob}
