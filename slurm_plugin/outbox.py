"""A node's outbox: where finished-job records (and running jobs' snapshots, in `running/`, and the node
ledger's records, in `node/`) wait for the database, one file per job run per node, each written atomically.

The node writes into it; the deliverer and `jobcarbon ingest` take `pending` records and `waiting`
snapshots out of it; `jobcarbon records` shows what is there (`find`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slurm_plugin import runs
from slurm_plugin.safefile import atomic_write, ensure_dir

RUNNING_DIR = "running"  # snapshots of running jobs, replaced until the finished record arrives
NODE_DIR = "node"  # the node ledger's records (node_record.py), apart: an older ingester never sees them


def filename(record: dict[str, Any]) -> str:
    """One name per job run per node: two jobs given the same id by Slurm differ in their run."""
    stem = f"{record['cluster']}_{record['job_id']}_{record['restart_count']}_{record['node']}"
    run = record.get("run")
    return f"{stem}_{runs.file_part(run)}.json" if runs.valid(run) else f"{stem}.json"


def write(outbox: Path, record: dict[str, Any], fsync: bool = True) -> Path:
    """Write the record atomically into the outbox (a running job's snapshot into outbox/running/);
    a rewrite of the same job run replaces it, and a finished record its job's last snapshot."""
    ensure_dir(outbox, 0o755)
    running = outbox / RUNNING_DIR
    if record["status"] == "running":
        outbox = ensure_dir(running, 0o755)
    path = outbox / filename(record)
    atomic_write(path, json.dumps(record, indent=1).encode() + b"\n", mode=0o640, fsync=fsync)
    if outbox != running:
        (running / path.name).unlink(missing_ok=True)
    return path


def pending(outbox: Path) -> list[Path]:
    """The record files in the outbox, by name; temporaries (dotfiles) are not records yet."""
    try:
        return sorted(p for p in outbox.glob("*.json") if not p.name.startswith("."))
    except FileNotFoundError:
        return []


def write_node(outbox: Path, document: dict[str, Any], name: str, fsync: bool = True) -> Path:
    """Write a node record atomically into outbox/node/ under `name` (`node_record.filename`)."""
    ensure_dir(outbox, 0o755)
    path = ensure_dir(outbox / NODE_DIR, 0o755) / name
    atomic_write(path, json.dumps(document, indent=1).encode() + b"\n", mode=0o640, fsync=fsync)
    return path


def pending_node(outbox: Path) -> list[Path]:
    """The node records waiting in the outbox, by name."""
    return pending(outbox / NODE_DIR)


def waiting(outbox: Path) -> list[Path]:
    """The running snapshots in the outbox, by name."""
    return sorted((outbox / RUNNING_DIR).glob("*.json"))


def find(outbox: Path, job_id: int | None = None) -> list[dict[str, Any]]:
    """Records in the outbox, optionally of one job, oldest first; unreadable files are skipped."""
    pattern = f"*_{job_id}_*_*.json" if job_id is not None else "*.json"
    records = []
    for path in sorted(outbox.glob(pattern)):
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if job_id is None or document.get("job_id") == job_id:
            records.append(document)
    return sorted(records, key=lambda r: (r.get("start", ""), r.get("node", "")))
