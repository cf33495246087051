"""Move finished-job records from a node's outbox into the accounting database, each exactly once.

A record leaves the outbox only after its transaction committed (or the database already had it);
a malformed one goes to quarantine with a `.reason` file beside it, and so does one whose part is
stored with other content (a conflict), with the stored version beside it where this connection may
read it; while the database is unavailable every record stays where it is for the next run. Several
ingesters may share an outbox: a file that vanishes under one was taken by another.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from slurm_plugin import outbox as outbox_files
from slurm_plugin import record as record_contract
from slurm_plugin.safefile import atomic_write, ensure_dir
from slurm_plugin.storage import RecordRejected, Store, StoreUnavailable
from slurm_plugin.storage.record_rows import part_key
from slurm_plugin.storage.store import Account, NewPart, PreparedParts

Log = Callable[[str, str], None]
BATCH = 32  # records per transaction when an outbox holds many: one commit (fsync) for them all


class Outcome(Enum):
    """What happened to one outbox file; the value names the IngestResult counter."""

    STORED = "stored"
    DUPLICATE = "duplicates"
    CONFLICT = "conflicts"
    QUARANTINED = "quarantined"
    KEPT = "kept"
    GONE = ""  # another ingester took it first


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    kept: int = 0
    conflicts: int = 0


def _silent(level: str, message: str) -> None:
    """The default log: ingest used as a library reports through its result only."""


def ingest_outbox(
    store: Store,
    outbox: Path,
    quarantine: Path,
    account: Account | None = None,
    log: Log = _silent,
) -> IngestResult:
    """Ingest every record in the outbox, BATCH at a time; stop, keeping the rest, when the database is
    unavailable."""
    result = IngestResult()
    files = outbox_files.pending(outbox)
    for start in range(0, len(files), BATCH):
        try:
            outcomes = ingest_files(store, files[start : start + BATCH], quarantine, account, log)
        except StoreUnavailable as exc:
            result.kept += sum(1 for path in files[start:] if path.exists())
            log("warning", f"ingest of {outbox} paused, {result.kept} records kept: {exc}")
            break
        for outcome in outcomes:
            if outcome.value:
                setattr(result, outcome.value, getattr(result, outcome.value) + 1)
    return result


def ingest_file(
    store: Store,
    path: Path,
    quarantine: Path,
    account: Account | None = None,
    log: Log = _silent,
) -> Outcome:
    """Store one record file, with the first footprint `account` gives it, and remove the file;
    StoreUnavailable leaves it in place."""
    return ingest_files(store, [path], quarantine, account, log)[0]


def ingest_files(
    store: Store,
    paths: list[Path],
    quarantine: Path,
    account: Account | None = None,
    log: Log = _silent,
) -> list[Outcome]:
    """Store record files in one transaction and remove them; malformed ones go to quarantine first.
    When the database refuses one, the files are tried one at a time, so only that one is quarantined."""
    return store_batch(store, prepare_batch(store, paths, quarantine, account, log), quarantine, account, log)


@dataclass
class Batch:
    """Record files read, checked and made ready to store (`prepare_batch`), for `store_batch`."""

    outcomes: list[Outcome]  # the files already dealt with: gone, kept, quarantined
    ready: list[tuple[Path, bytes, dict[str, Any]]]  # the files to store, in `prepared`'s order, read
    prepared: PreparedParts


def prepare_batch(
    store: Store,
    paths: list[Path],
    quarantine: Path,
    account: Account | None = None,
    log: Log = _silent,
) -> Batch:
    """The node's share of ingesting `paths`: read, check (quarantining malformed files), account and
    pack them. Only intensity (and, on SQLite, the duplicate check) is read from the database."""
    outcomes: list[Outcome] = []
    ready: list[tuple[Path, bytes, dict[str, Any]]] = []
    for path in paths:
        data = read_file(path, log)
        if isinstance(data, Outcome):
            outcomes.append(data)
            continue
        try:
            ready.append((path, data, record_contract.parse(data)))
        except record_contract.RecordError as exc:
            outcomes.append(quarantine_file(path, data, quarantine, f"{path.name}: {exc}", log))
    items = [
        (record, data, _guarded(account, path, log) if account else None) for path, data, record in ready
    ]
    return Batch(outcomes, ready, store.prepare_parts(items))


def store_batch(
    store: Store, batch: Batch, quarantine: Path, account: Account | None = None, log: Log = _silent
) -> list[Outcome]:
    """Write a prepared batch in one transaction and remove its files; a refused batch is retried a file
    at a time (`account` is for those retries), so only the refused file is quarantined."""
    try:
        part_ids = store.write_parts(batch.prepared)
    except RecordRejected as exc:
        if len(batch.ready) > 1:
            retried = [ingest_file(store, path, quarantine, account, log) for path, _, _ in batch.ready]
            return batch.outcomes + retried
        path, data, _ = batch.ready[0]
        reason = f"{path.name}: the database refused it: {exc}"
        return [*batch.outcomes, quarantine_file(path, data, quarantine, reason, log)]
    outcomes = list(batch.outcomes)
    for (path, data, record), part_id in zip(batch.ready, part_ids, strict=True):
        if part_id is None:
            outcomes.append(_stored_before(store, path, data, record, quarantine, log))
            continue
        remove_file(path, log)
        outcomes.append(Outcome.STORED)
    return outcomes


def _stored_before(
    store: Store, path: Path, data: bytes, record: dict[str, Any], quarantine: Path, log: Log
) -> Outcome:
    """A record whose part (`part_key`) is stored already: the same content is a redelivery, dropped
    silently; other content is a conflict, quarantined with the stored version and a reason."""
    stored = store.stored_digest(record)  # StoreUnavailable (a writer not granted it yet) keeps the rest
    incoming = record_contract.digest(record)
    if stored is None or stored == incoming:
        remove_file(path, log)
        return Outcome.DUPLICATE
    key = ", ".join(f"{name} {value}" for name, value in part_key(record).items())
    reason = f"{path.name}: conflicts with the stored part ({key}): sha256 {incoming}, stored {stored}"
    kept = store.stored_record(record)
    if kept is None:
        reason += "; the stored version is in the database only (job_parts.record_zlib)"
    return quarantine_file(path, data, quarantine, reason, log, kept, Outcome.CONFLICT)


def read_file(path: Path, log: Log) -> bytes | Outcome:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return Outcome.GONE
    except OSError as exc:
        log("warning", f"{path}: kept, cannot read it: {exc.strerror}")
        return Outcome.KEPT


def remove_file(path: Path, log: Log) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # stored all the same: the next run finds a duplicate and tries again
        log("warning", f"{path}: stored, but cannot remove it: {exc.strerror}")


def _guarded(account: Account, path: Path, log: Log) -> Account:
    """`account`, whose failure is only logged: the part is stored without a footprint, which the
    recompute then finds. An unavailable database is not such a failure: the record stays."""

    def guarded(new: NewPart) -> dict[str, Any] | None:
        try:
            return account(new)
        except StoreUnavailable:
            raise
        except Exception as exc:
            log("warning", f"{path.name}: stored without a footprint, its computation failed: {exc}")
            return None

    return guarded


# --- quarantine ---------------------------------------------------------------------------------


def quarantine_file(
    path: Path,
    data: bytes,
    quarantine: Path,
    reason: str,
    log: Log,
    stored: bytes | None = None,
    outcome: Outcome = Outcome.QUARANTINED,
) -> Outcome:
    """Move a record aside with `<name>.reason` (and a conflict's stored version, `<name>.stored.json`);
    an unusable quarantine keeps it."""
    try:
        ensure_dir(quarantine, 0o750)
        target = _free_name(quarantine, path.name)
        _move(path, target, data)
        if stored is not None:
            atomic_write(target.with_name(target.name + ".stored.json"), stored, mode=0o640)
        atomic_write(target.with_name(target.name + ".reason"), f"{reason}\n".encode(), mode=0o640)
    except FileNotFoundError:
        return Outcome.GONE
    except OSError as exc:
        log("error", f"{path}: kept, cannot quarantine it ({reason}): {exc}")
        return Outcome.KEPT
    log("warning", f"quarantined as {target}: {reason}")
    return outcome


def _free_name(directory: Path, name: str) -> Path:
    """`name` in `directory`, or a timestamped variant if an earlier file took it."""
    target = directory / name
    if not target.exists():
        return target
    return directory / f"{Path(name).stem}.{time.time_ns()}{Path(name).suffix}"


def _move(source: Path, target: Path, data: bytes) -> None:
    """Rename, or copy then unlink when the quarantine is on another filesystem."""
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        atomic_write(target, data, mode=0o640)
        source.unlink(missing_ok=True)
