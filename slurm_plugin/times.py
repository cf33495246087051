"""UTC times as jobcarbon writes and reads them: aware datetimes inside, ISO 8601 ending in "Z" outside.

The one place that turns epoch seconds, datetimes and ISO text into each other, so that records, the
store, reports and the CLI agree to the millisecond. Local time is a matter of rendering, not here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime


def utc(moment: date | float | str) -> datetime:
    """An aware UTC datetime from epoch seconds, a datetime or ISO 8601 text ("Z" or an offset).

    A datetime or text without an offset is taken as UTC, never as the host's local time; a date is
    its midnight UTC. Text that is not ISO 8601 raises ValueError.
    """
    if isinstance(moment, int | float):
        return datetime.fromtimestamp(moment, UTC)
    parsed = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def epoch_s(moment: date | float | str) -> float:
    """UTC epoch seconds of `moment` (see `utc`)."""
    return float(moment) if isinstance(moment, int | float) else utc(moment).timestamp()


def iso_z(moment: date | float | str, timespec: str = "auto") -> str:
    """ISO 8601 in UTC ending in "Z" (2024-03-06T19:00:00.250Z); `timespec` as `datetime.isoformat`."""
    return utc(moment).isoformat(timespec=timespec).replace("+00:00", "Z")
