"""Footprint math against hand-computed examples (docs/methodology.md has the first one)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from slurm_plugin.accounting import footprint, pue
from slurm_plugin.accounting.footprint import Fallback, Footprint, Slot, compute_columns
from slurm_plugin.config import PueRule
from slurm_plugin.intensity import IntensityPoint

H = 3600.0
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC).timestamp()
KWH = 3.6e6
WORLD = Fallback(472.94, "world", "Ember", "lifecycle")


def flat(value: float):
    return lambda _t: value


def compute(rows: list[tuple[float, float, float]], *args: Any, **kwargs: Any) -> Footprint:
    """`compute_columns` on rows written out by hand as (start_s, end_s, it_joules)."""
    starts, ends, joules = zip(*rows, strict=True) if rows else ((), (), ())
    return compute_columns(starts, ends, joules, *args, **kwargs)


def test_worked_example_crossing_two_slots() -> None:
    rows = [(T0, T0 + 0.5 * H, 0.5 * KWH), (T0 + 0.5 * H, T0 + 1.5 * H, 1.0 * KWH)]
    slots = [
        Slot(T0, T0 + H, 200, "measured_series", "electricitymaps", "lifecycle"),
        Slot(T0 + H, T0 + 2 * H, 300, "forecast_series", "electricitymaps", "lifecycle"),
    ]
    result = compute(rows, slots, WORLD, flat(1.2), zone="DE")
    assert result.it_energy_j == pytest.approx(1.5 * KWH)
    assert result.facility_energy_j == pytest.approx(1.8 * KWH)
    assert result.co2e_g == pytest.approx(420.0)
    assert result.effective_g_per_kwh == pytest.approx(233.3333, rel=1e-6)
    assert result.measured_intensity_fraction == pytest.approx(2 / 3)
    assert result.rung == "forecast_series"
    assert result.energy_by_rung_j == pytest.approx({"measured_series": KWH, "forecast_series": 0.5 * KWH})


def test_gaps_in_intensity_fall_back_and_gaps_in_energy_cost_nothing() -> None:
    rows = [(T0, T0 + H, 1.0 * KWH), (T0 + 2 * H, T0 + 3 * H, 2.0 * KWH)]  # an hour with no samples
    slots = [Slot(T0, T0 + H, 100, "measured_series", "gb", "direct")]
    result = compute(rows, slots, WORLD, flat(1.0))
    assert result.co2e_g == pytest.approx(100 + 2 * 472.94)
    assert result.rung == "world"
    assert result.measured_intensity_fraction == pytest.approx(1 / 3)
    assert result.scopes == ["direct", "lifecycle"]


def test_pue_per_partition_and_period() -> None:
    rules = [PueRule(1.5, partition="gpu"), PueRule(1.1, start=dt.date(2026, 3, 2) + dt.timedelta(days=1))]
    midnight = dt.datetime(2026, 3, 3, tzinfo=dt.UTC).timestamp()
    rows = [(midnight - H, midnight, KWH), (midnight, midnight + H, KWH)]
    cpu = compute(
        rows, [], WORLD, lambda t: pue.pue_at(rules, 1.3, "cpu", t), pue.change_points(rules, *_span(rows))
    )
    assert cpu.facility_energy_j == pytest.approx((1.3 + 1.1) * KWH)
    gpu = compute(rows, [], WORLD, lambda t: pue.pue_at(rules, 1.3, "gpu", t))
    assert gpu.facility_energy_j == pytest.approx(3.0 * KWH)


def test_most_specific_pue_rule_wins() -> None:
    rules = [
        PueRule(1.4, partition="gpu", start=dt.date(2026, 1, 1)),
        PueRule(1.5, partition="gpu"),
        PueRule(1.2, start=dt.date(2026, 1, 1)),
    ]
    when = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()
    assert pue.pue_at(rules, 1.0, "gpu", when) == 1.4
    assert pue.pue_at(rules, 1.0, "cpu", when) == 1.2
    assert pue.pue_at(rules, 1.0, "gpu", dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()) == 1.5


def _span(rows):
    return rows[0][0], rows[-1][1]


def test_overlapping_series_prefer_actuals() -> None:
    start = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
    points = [
        IntensityPoint("DE", start, start + dt.timedelta(hours=1), 300, "em", "lifecycle", forecast=True),
        IntensityPoint("DE", start, start + dt.timedelta(hours=1), 250, "em2", "lifecycle"),
        IntensityPoint(
            "DE", start + dt.timedelta(minutes=30), start + dt.timedelta(hours=2), 999, "x", "direct"
        ),
    ]
    slots = footprint.slots_from_points(points)
    assert [(s.g_per_kwh, s.rung) for s in slots] == [(250, "measured_series")]


def test_empty_timeline_is_zero() -> None:
    result = compute([], [], WORLD, flat(1.0))
    assert (result.co2e_g, result.it_energy_j, result.measured_intensity_fraction) == (0, 0, 0)


def test_it_columns_sum_components_and_skip_unmeasured_nan() -> None:
    nan = float("nan")
    starts, ends, joules = footprint.it_columns([0, 10], [10, 20], [5.0, nan], [nan, nan], [2.0, nan])
    assert (list(starts), list(ends), joules) == ([0, 10], [10, 20], [7.0, 0])


def test_a_series_covering_part_of_the_job_leaves_the_rest_to_the_fallback() -> None:
    rows = [(T0 + i * 600, T0 + (i + 1) * 600, 1000.0 + i) for i in range(12)]
    slots = [Slot(T0 + 1800, T0 + 5400, 200, "measured_series", "em", "lifecycle")]
    result = compute(rows, slots, WORLD, flat(1.2))
    assert result.rung == "world"
    assert result.measured_intensity_fraction == pytest.approx(0.5)


def test_week_long_job_conserves_energy() -> None:
    rows = [(T0 + i * 10, T0 + (i + 1) * 10, 30.0) for i in range(60480)]
    slots = [
        Slot(T0 + h * H, T0 + (h + 1) * H, 100 + h, "measured_series", "em", "lifecycle") for h in range(168)
    ]
    result = compute(rows, slots, WORLD, flat(1.0))
    assert result.it_energy_j == pytest.approx(30.0 * 60480)
    expected = sum(30.0 * 360 / KWH * (100 + h) for h in range(168))
    assert result.co2e_g == pytest.approx(expected)


def test_an_actual_beats_an_earlier_starting_overlapping_forecast() -> None:
    start = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)
    points = [
        IntensityPoint("GB", start, start + hour, 300, "gb", "direct", forecast=True),
        IntensityPoint("GB", start + hour / 2, start + hour, 200, "gb", "direct"),
        IntensityPoint("GB", start + hour, start + 2 * hour, 250, "gb", "direct", forecast=True),
    ]
    slots = footprint.slots_from_points(points)
    assert [(s.start_s - start.timestamp(), s.g_per_kwh) for s in slots] == [(1800.0, 200), (3600.0, 250)]
