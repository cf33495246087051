"""Move finished-job records from a node's outbox into the accounting database, each exactly once.

A record leaves the outbox only after its transaction committed (or the database already had it);
a malformed one goes to quarantine with a `.reason` file beside it; while the database is
unavailable every record stays where it is for the next run. Several ingesters may share an outbox:
a file that vanishes under one was taken by another.
"""

from __future__ import annotations

import errno
import itertools
import json
import operator
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from slurm_plugin.record import SCHEMA
from slurm_plugin.safefile import atomic_write, ensure_dir
from slurm_plugin.storage import RecordRejected, Store, StoreUnavailable
from slurm_plugin.storage.store import Account, NewPart, PreparedParts

Log = Callable[[str, str], None]
NAME = re.compile(r"[A-Za-z0-9_.@+\-]{1,128}")
METHODS = frozenset({"measured", "integrated", "apportioned", "estimated"})
MAX_INT = 2**63 - 1  # SQL BIGINT
BATCH = 32  # records per transaction when an outbox holds many: one commit (fsync) for them all
NUMBERS = frozenset({int, float})  # JSON numbers; bool is an int subclass but not a number here
ROW_TYPES = NUMBERS | {type(None)}


class RecordError(ValueError):
    """A file is not a valid finished-job record; the message names the field."""


class Outcome(Enum):
    """What happened to one outbox file; the value names the IngestResult counter."""

    STORED = "stored"
    DUPLICATE = "duplicates"
    QUARANTINED = "quarantined"
    KEPT = "kept"
    GONE = ""  # another ingester took it first


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    kept: int = 0


def _silent(level: str, message: str) -> None:
    """The default log: ingest used as a library reports through its result only."""


def pending(outbox: Path) -> list[Path]:
    """The record files in the outbox, by name; temporaries (dotfiles) are not records yet."""
    try:
        return sorted(p for p in outbox.glob("*.json") if not p.name.startswith("."))
    except FileNotFoundError:
        return []


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
    files = pending(outbox)
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
    ready: list[tuple[Path, bytes]]  # the files to store, in `prepared`'s item order, and their bytes
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
        data = _read(path, log)
        if isinstance(data, Outcome):
            outcomes.append(data)
            continue
        try:
            ready.append((path, data, parse(data)))
        except RecordError as exc:
            outcomes.append(_quarantine(path, data, quarantine, f"{path.name}: {exc}", log))
    items = [
        (record, data, _guarded(account, path, log) if account else None) for path, data, record in ready
    ]
    return Batch(outcomes, [(path, data) for path, data, _ in ready], store.prepare_parts(items))


def store_batch(
    store: Store, batch: Batch, quarantine: Path, account: Account | None = None, log: Log = _silent
) -> list[Outcome]:
    """Write a prepared batch in one transaction and remove its files; a refused batch is retried a file
    at a time (`account` is for those retries), so only the refused file is quarantined."""
    try:
        part_ids = store.write_parts(batch.prepared)
    except RecordRejected as exc:
        if len(batch.ready) > 1:
            retried = [ingest_file(store, path, quarantine, account, log) for path, _ in batch.ready]
            return batch.outcomes + retried
        path, data = batch.ready[0]
        reason = f"{path.name}: the database refused it: {exc}"
        return [*batch.outcomes, _quarantine(path, data, quarantine, reason, log)]
    outcomes = list(batch.outcomes)
    for (path, _), part_id in zip(batch.ready, part_ids, strict=True):
        _remove(path, log)
        outcomes.append(Outcome.STORED if part_id is not None else Outcome.DUPLICATE)
    return outcomes


def _read(path: Path, log: Log) -> bytes | Outcome:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return Outcome.GONE
    except OSError as exc:
        log("warning", f"{path}: kept, cannot read it: {exc.strerror}")
        return Outcome.KEPT


def _remove(path: Path, log: Log) -> None:
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


def _quarantine(path: Path, data: bytes, quarantine: Path, reason: str, log: Log) -> Outcome:
    """Move a malformed record aside with `<name>.reason`; an unusable quarantine keeps it."""
    try:
        ensure_dir(quarantine, 0o750)
        target = _free_name(quarantine, path.name)
        _move(path, target, data)
        atomic_write(target.with_name(target.name + ".reason"), f"{reason}\n".encode(), mode=0o640)
    except FileNotFoundError:
        return Outcome.GONE
    except OSError as exc:
        log("error", f"{path}: malformed ({reason}), kept: cannot quarantine it: {exc}")
        return Outcome.KEPT
    log("warning", f"quarantined as {target}: {reason}")
    return Outcome.QUARANTINED


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


# --- validation ---------------------------------------------------------------------------------


def parse(data: bytes, statuses: tuple[str, ...] = ("complete", "partial")) -> dict[str, Any]:
    """The record in `data`, checked for every field the store reads; RecordError names the first bad one.
    A finished record is complete or partial; `statuses=("running",)` reads a running job's snapshot."""
    try:
        record = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise RecordError("record: must be a JSON object")
    for field, (valid, expected) in FIELDS.items():
        _check(record, field, valid, expected)
    _check(record, "status", statuses.__contains__, " or ".join(map(repr, statuses)))
    for component in ("cpu", "dram", "gpu"):
        if record["energy"][component] is not None:
            _check(record, f"energy.{component}.joules", _amount, "a number >= 0")
            _check(record, f"energy.{component}.method", METHODS.__contains__, f"one of {sorted(METHODS)}")
    _check_rows(record["timeline"]["rows"])
    return record


def _check(record: dict[str, Any], field: str, valid: Callable[[Any], bool], expected: str) -> None:
    value: Any = record
    for key in field.split("."):
        if not isinstance(value, dict):
            raise RecordError(f"{field}: missing (its parent is not an object)")
        if key not in value:
            raise RecordError(f"{field}: missing")
        value = value[key]
    if not _safe(valid, value):
        raise RecordError(f"{field}: must be {expected}, not {json.dumps(value)[:60]}")


def _check_rows(rows: list[Any]) -> None:
    """Every row is [start_s, end_s, cpu_j, dram_j, gpu_j]; rows are most of a record, so a valid one
    passes in a few C-level sweeps, and only a failing one is walked row by row to name the first bad one."""
    if not _rows_pass(rows):
        _find_bad_row(rows)


def _rows_pass(rows: list[Any]) -> bool:
    """True if every row is valid; False if one may not be (the row-by-row check then decides)."""
    if not rows:
        return True
    try:
        columns = list(zip(*rows, strict=True))
    except (TypeError, ValueError):  # a row that is not a list, or rows of different lengths
        return False
    if len(columns) != 5:
        return False
    starts, ends, *energies = columns
    if (set(map(type, starts)) | set(map(type, ends))) - NUMBERS:
        return False  # None, bool, str (a string or an object as a row iterates as strings)
    if not (min(starts) >= 0 and all(map(operator.le, starts, ends)) and max(ends) <= MAX_INT):
        return False  # NaN fails `le`, an infinite end the maximum
    joules = list(itertools.chain(*energies))
    if set(map(type, joules)) - ROW_TYPES:
        return False
    measured = list(filter(None, joules))  # without nulls; zeros pass anyway
    try:
        # all >= 0, so a sum <= MAX_INT bounds each; NaN and infinity fail the comparison
        return min(measured, default=0) >= 0 and sum(measured) <= MAX_INT
    except OverflowError:  # an integer beyond float range beside a float
        return False


def _find_bad_row(rows: list[Any]) -> None:
    for index, row in enumerate(rows):
        if type(row) is not list or len(row) != 5:
            raise RecordError(f"timeline.rows[{index}]: must be [start_s, end_s, cpu_j, dram_j, gpu_j]")
        t0, t1, *energies = row
        if not (type(t0) in NUMBERS and type(t1) in NUMBERS and 0 <= t0 <= t1 <= MAX_INT):
            raise RecordError(f"timeline.rows[{index}]: start_s and end_s must be numbers >= 0, start first")
        for value in energies:
            if value is not None and not (type(value) in NUMBERS and 0 <= value <= MAX_INT):
                raise RecordError(f"timeline.rows[{index}]: energies must be numbers >= 0 or null")


def _safe(valid: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(valid(value))
    except (TypeError, ValueError):
        return False


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_INT


def _amount(value: Any) -> bool:
    return type(value) in NUMBERS and 0 <= value <= MAX_INT  # NaN and infinity fail the comparisons


def _text(value: Any) -> bool:
    """Text both databases store as given: UTF-8-encodable (no lone surrogate) and without NUL."""
    return isinstance(value, str) and "\x00" not in value and value.encode() is not None


def _stamp(value: Any) -> bool:
    return isinstance(value, str) and value.endswith("Z") and datetime.fromisoformat(value) is not None


FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "schema": (lambda v: v == SCHEMA, repr(SCHEMA)),
    "cluster": (lambda v: isinstance(v, str) and NAME.fullmatch(v), "a name of 1-128 of [A-Za-z0-9_.@+-]"),
    "job_id": (_count, "an integer >= 0"),
    "restart_count": (_count, "an integer >= 0"),
    "node": (lambda v: isinstance(v, str) and NAME.fullmatch(v), "a name of 1-128 of [A-Za-z0-9_.@+-]"),
    "user": (_text, "a string"),
    "uid": (_count, "an integer >= 0"),
    "gid": (_count, "an integer >= 0"),
    "account": (lambda v: v is None or _text(v), "a string or null"),
    "partition": (lambda v: v is None or _text(v), "a string or null"),
    "start": (_stamp, "a UTC ISO 8601 time ending in Z"),
    "end": (_stamp, "a UTC ISO 8601 time ending in Z"),
    "elapsed_s": (_amount, "a number >= 0"),
    "allocated_cpus.count": (_count, "an integer >= 0"),
    "allocated_cpus.list": (_text, "a string"),
    "gpus": (lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v), "a list of objects"),
    "energy.cpu": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "energy.dram": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "energy.gpu": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "energy.total_joules": (_amount, "a number >= 0"),
    "timeline.origin": (_stamp, "a UTC ISO 8601 time ending in Z"),
    "timeline.rows": (lambda v: isinstance(v, list), "a list"),
    "coverage.fraction": (lambda v: _amount(v) and v <= 1, "a number from 0 to 1"),
    "partial_reasons": (
        lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "a string list",
    ),
    "notes": (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "a string list"),
    "software.version": (_text, "a string"),
}
