"""Sensors: one module per data source, each returning raw readings with a per-channel status.

Deltas, wraparound and resets are handled in one shared place (`slurm_plugin.node.counters`); sensors only
read. A sensor that is not present on a node reports `Status.ABSENT` with a reason, which is normal,
not an error; one unreadable channel never hides the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

READ_SIZE = 8192  # more than a job cgroup's memory.stat or cpu.stat holds


class Status(StrEnum):
    OK = "ok"
    ABSENT = "absent"
    UNREADABLE = "unreadable"
    NOT_SUPPORTED = "not_supported"
    ERROR = "error"


class SensorUnavailable(Exception):
    """The data source does not exist or cannot be used on this node; the message says why."""


# Not frozen: built on every tick, and a frozen dataclass sets each field through object.__setattr__.
@dataclass(slots=True)
class Reading:
    """One raw cumulative counter from one channel (None when the channel could not be read)."""

    channel: str
    value: float | None
    status: Status = Status.OK
    reason: str = ""


def read_int(path: str | os.PathLike[str]) -> int:
    """A one-number file (a counter, a byte count): one read, no Python file object.

    Opened afresh on every read, never kept open: the test bed replaces its simulated sysfs and cgroup
    files by rename, so a kept descriptor would go on reading the old file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return int(os.read(fd, 64))
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    """A small ASCII file, read with os.read: `open()` costs ~3x as much, for every job on every tick.

    A read shorter than asked for is the end of the file for the regular, proc and cgroup files read
    here, which saves the empty read that would confirm it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, READ_SIZE)]
        while len(chunks[-1]) == READ_SIZE:
            chunks.append(os.read(fd, READ_SIZE))
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii")
