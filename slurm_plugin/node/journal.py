"""The per-job sample journal: an append-only JSON-lines file that survives a sampler crash.

Each line is complete before the next begins (one write with O_APPEND, fsync'd when configured), so
after SIGKILL, OOM or a reboot at most the line being written is lost; `read` drops a torn last line
and says so. The epilog builds the job's record from this file when the sampler is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_plugin.safefile import open_append, write_all

VERSION = 1
# One encoder for every line (json.dumps with `separators` builds one per call); entries are trees of
# dicts and lists built by the sampler, so the check for circular references is skipped.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class JournalError(ValueError):
    """The journal is missing its header or is not a jobcarbon journal."""


class JournalWriter:
    """Appends whole lines; flushes them to disk at most every `sync_interval_s` (0: every line).

    A line is in the page cache as soon as it is written, so a killed sampler loses nothing; the
    interval only bounds what a power loss can take. A line the disk refuses (full, EIO) is cut back
    off the file, kept in memory and written, in order, before the next one: `error` says why while
    lines wait, and `close` hands back those still unwritten.
    """

    def __init__(self, path: Path, fsync: bool, sync_interval_s: float = 0.0):
        self.path = path
        self.fsync = fsync
        self.sync_interval_s = sync_interval_s
        self.error: OSError | None = None
        self._fd = open_append(path)
        self._size = os.fstat(self._fd).st_size  # one writer per journal: the job's lock holder
        self._waiting: deque[bytes] = deque()
        self._synced = time.monotonic()

    def append(self, entry: dict[str, Any]) -> None:
        self.write_lines([(_ENCODER.encode(entry) + "\n").encode()])

    def write_lines(self, lines: list[bytes]) -> None:
        """Write encoded lines after any still waiting; what the disk refuses waits in turn."""
        self._waiting.extend(lines)
        while self._waiting:
            line = self._waiting[0]
            try:
                write_all(self._fd, line)
            except OSError as exc:
                self.error = exc
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)  # a torn line would cost the next one too
                return
            self._size += len(line)
            self._waiting.popleft()
        self.error = None
        if self.fsync and time.monotonic() - self._synced >= self.sync_interval_s:
            self._sync()

    def _sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:  # the lines are in the page cache: only a power loss could take them
            self.error = exc
        self._synced = time.monotonic()

    def close(self) -> list[bytes]:
        """Close the file; return the lines it could not take (empty when all are written)."""
        if self._fd >= 0:
            self.write_lines([])
            if self.fsync:
                self._sync()
            os.close(self._fd)
            self._fd = -1
        return list(self._waiting)


@dataclass
class Journal:
    header: dict[str, Any]
    intervals: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    torn: bool = False
    ended: float | None = None  # the job's end, once the sampler has journaled every interval up to it


def end_line(end_s: float) -> dict[str, Any]:
    """The journal's last line: every interval up to the job's end `end_s` is in, so whoever finds the
    journal later (an agent that replaced a dead one) writes the record as it is, with no gap."""
    return {"type": "end", "t": end_s}


def ended(path: Path) -> float | None:
    """The end time in the journal's end line, read from its tail only; None if it has none."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(handle.seek(0, os.SEEK_END) - 512, 0))
            last = handle.read().rstrip(b"\n").rpartition(b"\n")[2]
    except FileNotFoundError:
        return None
    try:
        entry = json.loads(last)
        return float(entry["t"]) if isinstance(entry, dict) and entry.get("type") == "end" else None
    except (ValueError, KeyError, TypeError):
        return None


def read(path: Path) -> Journal:
    """Parse a journal; a torn or corrupt line is skipped and flagged, a missing header is an error."""
    journal: Journal | None = None
    torn = False
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                entry = json.loads(raw)
            except ValueError:
                torn = True
                continue
            kind = entry.get("type") if isinstance(entry, dict) else None
            if kind == "header":
                if entry.get("version") != VERSION:
                    raise JournalError(
                        f"{path}:{number}: unsupported journal version {entry.get('version')!r}"
                    )
                journal = journal or Journal(entry)
            elif journal is None:
                raise JournalError(f"{path}:{number}: entry before the header")
            elif kind == "interval":
                journal.intervals.append(entry)
            elif kind == "note":
                text = str(entry.get("text", ""))
                if text not in journal.notes:  # an agent that resumed the job noted it again
                    journal.notes.append(text)
            elif kind == "resume":
                journal.resumes.append(entry)
            elif kind == "end":
                journal.ended = float(entry["t"])
            elif kind == "gpus":  # resolved after the start, once NVML opened (sampler._late_gpus)
                journal.header["gpus"] = entry.get("gpus", [])
    if journal is None:
        raise JournalError(f"{path}: no header line")
    journal.torn = torn
    return journal
