"""The per-job sample journal: an append-only JSON-lines file that survives a sampler crash.

Each line is complete before the next begins (one write with O_APPEND, fsync'd when configured), so
after SIGKILL, OOM or a reboot at most the line being written is lost; `read` drops a torn last line
and says so. The epilog builds the job's record from this file when the sampler is gone.
"""

from __future__ import annotations

import json
import os
import time
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
    interval only bounds what a power loss can take.
    """

    def __init__(self, path: Path, fsync: bool, sync_interval_s: float = 0.0):
        self.path = path
        self.fsync = fsync
        self.sync_interval_s = sync_interval_s
        self._fd = open_append(path)
        self._synced = time.monotonic()

    def append(self, entry: dict[str, Any]) -> None:
        write_all(self._fd, (_ENCODER.encode(entry) + "\n").encode())
        if self.fsync and time.monotonic() - self._synced >= self.sync_interval_s:
            os.fdatasync(self._fd)
            self._synced = time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            if self.fsync:
                os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1


@dataclass
class Journal:
    header: dict[str, Any]
    intervals: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    torn: bool = False


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
                journal.notes.append(str(entry.get("text", "")))
            elif kind == "resume":
                journal.resumes.append(entry)
            elif kind == "gpus":  # resolved after the start, once NVML opened (sampler._late_gpus)
                journal.header["gpus"] = entry.get("gpus", [])
    if journal is None:
        raise JournalError(f"{path}: no header line")
    journal.torn = torn
    return journal
