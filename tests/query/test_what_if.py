"""The what-if: intensity integrated over a window of the job's own length, by hand-computed numbers."""

from __future__ import annotations

import pytest

from slurm_plugin.query import what_if

HOUR = 3600.0


def slots(*values: float, start: float = 0.0, step: float = HOUR) -> list[dict[str, float]]:
    return [
        {"start_s": start + i * step, "end_s": start + (i + 1) * step, "g_per_kwh": g}
        for i, g in enumerate(values)
    ]


def test_a_two_hour_job_is_weighed_over_two_hours_not_one_slot() -> None:
    # 100, 400, 100, 100 g/kWh hourly; a 2 h job started at 0 using 1 kWh. One slot's intensity would say
    # dirtiest 400 g; a 2 h run can only average 400 with a neighbour: (100 + 400) / 2 = 250 g at best.
    day = what_if.day_range(1.0, slots(100, 400, 100, 100), 0.0, 2 * HOUR)
    assert day["dirtiest"] == {
        "start": "1970-01-01T00:00:00Z", "end": "1970-01-01T02:00:00Z", "g_per_kwh": 250.0, "co2e_g": 250.0,
    }  # fmt: skip
    assert day["greenest"]["start"] == "1970-01-01T02:00:00Z"
    assert (day["greenest"]["g_per_kwh"], day["greenest"]["co2e_g"]) == (100.0, 100.0)
    assert (day["slots"], day["duration_s"]) == (4, 7200.0)


def test_a_window_between_slot_edges_is_the_time_weighted_mean() -> None:
    # 90 min job over 0, 600, 0 g/kWh: the best overlap with the 600 slot is the whole hour: 600 x 60/90
    day = what_if.day_range(2.0, slots(0, 600, 0), 0.0, 1.5 * HOUR)
    assert day["dirtiest"]["g_per_kwh"] == pytest.approx(400.0)
    assert day["dirtiest"]["co2e_g"] == pytest.approx(800.0)
    assert day["greenest"]["g_per_kwh"] == pytest.approx(200.0)  # 30 of its 90 min in the 600 slot


def test_windows_across_a_gap_in_the_series_are_not_guessed() -> None:
    series = slots(100, 500) + slots(50, start=3 * HOUR)  # nothing stored from 2 h to 3 h
    day = what_if.day_range(1.0, series, 0.0, 1.5 * HOUR)
    only_fit = 100 * 2 / 3 + 500 / 3  # only [0, 2 h] holds a 90 min window
    assert day["greenest"]["g_per_kwh"] == pytest.approx(only_fit, abs=1e-3)
    assert what_if.day_range(1.0, series, 0.0, 3 * HOUR) is None  # no 3 h window without the gap


def test_starts_are_tried_only_within_twelve_hours_of_the_jobs() -> None:
    # a clean slot 13 h after the start is out of reach; 11 h after is in
    series = slots(*([300.0] * 11 + [20.0] + [300.0] * 12))
    day = what_if.day_range(1.0, series, 0.0, HOUR)
    assert day["greenest"]["start"] == "1970-01-01T11:00:00Z"
    late = what_if.day_range(1.0, series, -2 * HOUR, HOUR)  # started 2 h before the series: 20 g at 13 h
    assert late["greenest"]["g_per_kwh"] == 300.0
    assert what_if.fetch_range(0.0, 2 * HOUR) == (-12 * HOUR, 14 * HOUR)


def test_an_actual_wins_over_a_forecast_and_a_short_job_takes_its_slot() -> None:
    series = [
        {"start_s": 0.0, "end_s": HOUR, "g_per_kwh": 50.0},
        {"start_s": 0.0, "end_s": HOUR, "g_per_kwh": 10.0},  # the forecast of the same slot
        {"start_s": HOUR, "end_s": 2 * HOUR, "g_per_kwh": 300.0},
    ]
    day = what_if.day_range(1.0, series, 0.0, 0.0)
    seen = (day["greenest"]["g_per_kwh"], day["dirtiest"]["g_per_kwh"], day["duration_s"])
    assert seen == (50.0, 300.0, 1.0)
    assert what_if.day_range(1.0, [], 0.0, 60.0) is None
