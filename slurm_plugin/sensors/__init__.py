"""Sensors: one module per data source, each returning raw readings with a per-channel status.

Deltas, wraparound and resets are handled in one shared place (`slurm_plugin.counters`); sensors only
read. A sensor that is not present on a node reports `Status.ABSENT` with a reason, which is normal,
not an error; one unreadable channel never hides the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    ABSENT = "absent"
    UNREADABLE = "unreadable"
    NOT_SUPPORTED = "not_supported"
    ERROR = "error"


class SensorUnavailable(Exception):
    """The data source does not exist or cannot be used on this node; the message says why."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One raw cumulative counter from one channel (None when the channel could not be read)."""

    channel: str
    value: float | None
    status: Status = Status.OK
    reason: str = ""
