"""Backfill every configured intensity series into the store, one provider at a time.

Run from a host with internet access (`jobcarbon intensity sync`), never from a node's hooks. A
provider that fails is logged in one line and reported; the others still sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from slurm_plugin import config
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.intensity import providers as registry

Log = Callable[[str, str], None]  # (level, message), as slurm_plugin.eventlog.EventLog


class IntensityStore(Protocol):
    """What sync needs from storage: upserts keyed by (zone, source, start), so revisions overwrite."""

    def upsert_intensity(self, points: Iterable[IntensityPoint]) -> int: ...

    def intensity(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]: ...


@dataclass(frozen=True)
class SyncResult:
    """One provider's outcome: points written (also when it failed part-way) and the error line."""

    provider: str
    zone: str
    start: datetime
    end: datetime
    points: int = 0
    error: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


def _discard(level: str, message: str) -> None:
    """Default log: callers that want lines pass an EventLog."""


def sync(
    store: IntensityStore,
    cfg: config.Config,
    now: datetime | None = None,
    log: Log = _discard,
    build: Callable[[config.Provider, config.Intensity], registry.IntensityProvider] = registry.build,
) -> list[SyncResult]:
    """Fetch the last `backfill_days` of every configured provider and upsert the points."""
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = _hour_floor(end - timedelta(days=cfg.intensity.backfill_days))
    return [_sync_one(store, cfg.intensity, p, start, end, log, build) for p in cfg.intensity.providers]


def _sync_one(
    store: IntensityStore,
    intensity: config.Intensity,
    provider_cfg: config.Provider,
    start: datetime,
    end: datetime,
    log: Log,
    build: Callable[[config.Provider, config.Intensity], registry.IntensityProvider],
) -> SyncResult:
    """Backfill one provider chunk by chunk, oldest first; any exception ends only this provider."""
    label = f"intensity sync {provider_cfg.name} zone {provider_cfg.zone}"
    written = 0
    notes: tuple[str, ...] = ()
    try:
        provider = build(provider_cfg, intensity)
        for chunk_start, chunk_end in _chunks(start, end, provider.max_range):
            written += store.upsert_intensity(provider.fetch(chunk_start, chunk_end))
        notes = tuple(provider.notes)
    # Error boundary: one provider (or a bug in it) must never stop the other providers' sync.
    except Exception as exc:
        error = " ".join(str(exc).split()) or type(exc).__name__
        log("error", f"{label}: failed after {written} points: {error}")
        return SyncResult(provider_cfg.name, provider_cfg.zone, start, end, written, error)
    for note in notes:
        log("warning", f"{label}: {note}")
    log("info", f"{label}: {written} points for {start:%Y-%m-%dT%H:%MZ} .. {end:%Y-%m-%dT%H:%MZ}")
    return SyncResult(provider_cfg.name, provider_cfg.zone, start, end, written, notes=notes)


def _chunks(start: datetime, end: datetime, size: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive [a, b) ranges of at most `size` covering [start, end)."""
    while start < end:
        stop = min(start + size, end)
        yield start, stop
        start = stop


def _hour_floor(moment: datetime) -> datetime:
    """Start of the hour, so hourly series get whole first points."""
    return moment.replace(minute=0, second=0, microsecond=0)
