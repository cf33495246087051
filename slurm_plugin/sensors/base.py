"""What every sensor shares: a per-channel status, raw readings, and the face `jobcarbon doctor` sees.

A sensor only reads: deltas, wraparound and resets are handled in one shared place
(`slurm_plugin.node.counters`). A source that is not on this node is `Status.ABSENT` with a reason,
which is normal, not a failure; one unreadable channel never hides the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from slurm_plugin.errors import JobcarbonError


class Status(StrEnum):
    OK = "ok"
    ABSENT = "absent"  # the source does not exist here (no powercap tree, no libnvidia-ml): normal
    UNREADABLE = "unreadable"  # there, but this process may not read it
    NOT_SUPPORTED = "not_supported"  # there, but without this capability (a GPU without an energy counter)
    ERROR = "error"  # there, and failing


class SensorUnavailable(JobcarbonError):
    """The data source cannot be used on this node; the message says why, `status` whether it is
    absent (normal) or failing."""

    def __init__(self, reason: str, status: Status = Status.ABSENT):
        super().__init__(reason)
        self.status = status


# Not frozen: built on every tick, and a frozen dataclass sets each field through object.__setattr__.
@dataclass(slots=True)
class Reading:
    """One raw cumulative counter from one channel (None when the channel could not be read)."""

    channel: str
    value: float | None
    status: Status = Status.OK
    reason: str = ""


@dataclass(frozen=True)
class Finding:
    """One line a probe reports beside its verdict: a channel (a GPU) or a note (an ignored zone)."""

    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class Probe:
    """What a sensor can measure on this node and why not: what `jobcarbon doctor` shows."""

    status: Status
    reason: str
    findings: tuple[Finding, ...] = ()


class Sensor(Protocol):
    """A node data source as doctor sees it; each module adds its own read methods."""

    name: str

    def probe(self) -> Probe:
        """Whether the source can be used here, with the reason; never raises for an absent source."""
        ...

    def close(self) -> None:
        """Release what the sensor holds (a library session); safe to call twice."""
        ...
