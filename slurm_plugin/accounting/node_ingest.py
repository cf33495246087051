"""Move the node ledger's records (outbox/node/) into the database, each interval exactly once.

As for job records (ingest.py): a file leaves the outbox only once its intervals are committed or
were stored already with the same content; a malformed file, or one with an interval stored with other
content (a conflict), goes to quarantine with its reason; while the database is away every file stays.
"""

from __future__ import annotations

from pathlib import Path

from slurm_plugin import node_record
from slurm_plugin import outbox as outbox_files
from slurm_plugin.accounting.ingest import (
    IngestResult,
    Log,
    Outcome,
    quarantine_file,
    read_file,
    remove_file,
)
from slurm_plugin.record import RecordError
from slurm_plugin.storage import StoreUnavailable, node_intervals
from slurm_plugin.storage.store import Store


def _silent(level: str, message: str) -> None:
    """The default log: ingest used as a library reports through its result only."""


def ingest_node_outbox(store: Store, outbox: Path, quarantine: Path, log: Log = _silent) -> IngestResult:
    """Ingest every node record in the outbox; stop, keeping the rest, when the database is unavailable.
    A file counts once: stored if any of its intervals is new, else a duplicate."""
    result = IngestResult()
    files = outbox_files.pending_node(outbox)
    for index, path in enumerate(files):
        try:
            outcome = ingest_node_file(store, path, quarantine, log)
        except StoreUnavailable as exc:
            result.kept += sum(1 for rest in files[index:] if rest.exists())
            log("warning", f"node records of {outbox} kept, {result.kept} files: {exc}")
            break
        if outcome.value:
            setattr(result, outcome.value, getattr(result, outcome.value) + 1)
    return result


def ingest_node_file(store: Store, path: Path, quarantine: Path, log: Log = _silent) -> Outcome:
    """Store one node record file and remove it; StoreUnavailable leaves it in place."""
    data = read_file(path, log)
    if isinstance(data, Outcome):
        return data
    try:
        document = node_record.parse(data)
    except RecordError as exc:
        return quarantine_file(path, data, quarantine, f"{path.name}: {exc}", log)
    answers = node_intervals.add(store, document)
    conflicts = [
        f"interval t0_s {interval['t0_s']}: sha256 {incoming}, stored {stored}"
        for interval, (incoming, stored) in zip(document["intervals"], answers, strict=True)
        if stored is not None and stored != incoming
    ]
    if conflicts:
        reason = f"{path.name}: conflicts with stored node intervals ({'; '.join(conflicts)})"
        return quarantine_file(path, data, quarantine, reason, log, outcome=Outcome.CONFLICT)
    remove_file(path, log)
    return Outcome.STORED if any(stored is None for _, stored in answers) else Outcome.DUPLICATE
