"""Running jobs' snapshots: their way from the node outbox into the database.

The node agent rewrites `outbox/running/<record name>` every `sampler.snapshot_interval_s`; these
are ingested like records but kept as one replaceable row per part, which the finished record
deletes. A snapshot is a convenience: a bad one is dropped with a log line, never quarantined.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from slurm_plugin import outbox as outbox_files
from slurm_plugin.accounting import join
from slurm_plugin.config import Accounting
from slurm_plugin.record import RecordError, parse
from slurm_plugin.storage import Store


def ingest_snapshots(
    store: Store, outbox: Path, settings: Accounting, log: Callable[[str, str], None]
) -> int:
    """Store the newest snapshot of every running part; returns how many were stored."""
    stored = 0
    for path in outbox_files.waiting(outbox):
        try:
            before = os.stat(path)
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        try:
            record = parse(data, statuses=("running",))
        except RecordError as exc:
            log("warning", f"{path.name}: running snapshot dropped: {exc}")
            _unlink_if_unchanged(path, before)
            continue
        footprint = join.compute_record(store, record, settings).to_dict()
        stored += store.upsert_running(record, data, footprint)
        _unlink_if_unchanged(path, before)
    return stored


def _unlink_if_unchanged(path: Path, seen: os.stat_result) -> None:
    """Remove a snapshot unless the agent replaced it since we read it (a rename gives a new inode)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return
    if (now.st_ino, now.st_mtime_ns) == (seen.st_ino, seen.st_mtime_ns):
        path.unlink(missing_ok=True)
