"""UTC times: epoch seconds, aware datetimes and ISO text ending in Z turn into each other exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from slurm_plugin.times import epoch_s, iso_z, utc

START = 1767225600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("moment", "timespec", "text"),
    [
        (START + 0.25, "milliseconds", "2026-01-01T00:00:00.250Z"),
        (START, "seconds", "2026-01-01T00:00:00Z"),
        (START, "minutes", "2026-01-01T00:00Z"),
        (START, "auto", "2026-01-01T00:00:00Z"),
        (START + 0.5, "auto", "2026-01-01T00:00:00.500000Z"),
        (datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "seconds", "2026-01-01T00:00:00Z"),
    ],
)
def test_iso_z_writes_utc_with_a_z(moment: float | datetime, timespec: str, text: str) -> None:
    assert iso_z(moment, timespec) == text


@pytest.mark.parametrize(
    "text", ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00", "2026-01-01"]
)
def test_text_with_z_an_offset_or_none_is_utc(text: str) -> None:
    assert utc(text) == datetime(2026, 1, 1, tzinfo=UTC)
    assert utc(text).tzinfo is UTC
    assert epoch_s(text) == START


def test_epoch_and_datetimes_round_trip() -> None:
    assert utc(START) == datetime(2026, 1, 1, tzinfo=UTC)
    assert epoch_s(utc(START + 0.125)) == START + 0.125
    assert epoch_s(START) == START
    assert utc(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)  # naive: UTC, not local time


def test_text_that_is_not_iso_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        utc("yesterday Z")
