"""EnergyCounter: wraparound, resets, power integration and implausible jumps, in one place."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slurm_plugin.methods import Method
from slurm_plugin.node.counters import EnergyCounter, EnergyDelta

UJ = 1e-6  # RAPL energy_uj
MJ = 1e-3  # nvmlDeviceGetTotalEnergyConsumption, millijoules
RAPL_WRAP = 262_143_328_850  # max_energy_range_uj of a Xeon package zone


def rapl(max_power_w: float | None = None) -> EnergyCounter:
    return EnergyCounter(UJ, wrap=RAPL_WRAP, max_power_w=max_power_w)


def test_first_reading_is_only_a_baseline() -> None:
    assert rapl().update(100.0, 5_000_000) is None


def test_measured_delta() -> None:
    counter = rapl()
    counter.update(100.0, 1_000_000_000)
    assert counter.update(110.0, 1_850_000_000) == EnergyDelta(pytest.approx(850.0), Method.MEASURED)


def test_wraparound_adds_the_range() -> None:
    counter = rapl()
    counter.update(100.0, RAPL_WRAP - 100_000_000)
    delta = counter.update(110.0, 750_000_000)
    assert delta == EnergyDelta(pytest.approx(850.0), Method.MEASURED)
    assert counter.resets == 0


def test_reset_without_wrap_is_a_gap() -> None:
    counter = EnergyCounter(MJ)  # NVML: 64-bit, never wraps, resets on a driver reload
    counter.update(100.0, 9_000_000)
    assert counter.update(110.0, 2_000) is None
    assert counter.resets == 1
    assert counter.update(120.0, 2_002_000) == EnergyDelta(pytest.approx(2000.0), Method.MEASURED)


def test_reset_with_power_is_integrated() -> None:
    counter = EnergyCounter(MJ)
    counter.update(100.0, 9_000_000, power_w=200.0)
    delta = counter.update(110.0, 2_000, power_w=300.0)
    assert delta == EnergyDelta(pytest.approx(2500.0), Method.INTEGRATED)  # (200 + 300) / 2 x 10 s
    assert counter.resets == 1


def test_power_only_channel_is_integrated_with_the_trapezoid_rule() -> None:
    counter = EnergyCounter(MJ)
    assert counter.update(0.0, None, power_w=100.0) is None
    assert counter.update(4.0, None, power_w=300.0) == EnergyDelta(pytest.approx(800.0), Method.INTEGRATED)


def test_missing_previous_power_uses_the_current_one() -> None:
    counter = EnergyCounter(MJ)
    counter.update(0.0, None)
    assert counter.update(10.0, None, power_w=250.0) == EnergyDelta(pytest.approx(2500.0), Method.INTEGRATED)


def test_negative_previous_power_is_ignored() -> None:
    counter = EnergyCounter(MJ)
    counter.update(0.0, None, power_w=-1.0)
    assert counter.update(10.0, None, power_w=250.0) == EnergyDelta(pytest.approx(2500.0), Method.INTEGRATED)


def test_negative_power_is_a_gap_not_energy() -> None:
    counter = EnergyCounter(MJ)
    counter.update(0.0, None, power_w=100.0)
    assert counter.update(10.0, None, power_w=-1.0) is None


def test_unreadable_counter_is_a_gap_then_measures_again() -> None:
    counter = rapl()
    counter.update(0.0, 1_000_000)
    assert counter.update(10.0, None) is None
    assert counter.update(20.0, 3_000_000) is None  # no baseline across the gap
    assert counter.update(30.0, 5_000_000) == EnergyDelta(pytest.approx(2.0), Method.MEASURED)


def test_implausible_jump_is_a_gap() -> None:
    counter = rapl(max_power_w=500.0)
    counter.update(0.0, 1_000_000_000)
    assert counter.update(10.0, 1_000_000_000 + 6_000_000_000) is None  # 6 kJ in 10 s is 600 W
    assert counter.resets == 1
    assert counter.update(20.0, 7_000_000_000 + 4_000_000_000) == EnergyDelta(
        pytest.approx(4000.0), Method.MEASURED
    )


def test_implausible_jump_with_power_is_integrated() -> None:
    counter = EnergyCounter(MJ, max_power_w=700.0)
    counter.update(0.0, 1_000, power_w=400.0)
    delta = counter.update(10.0, 1_000 + 50_000_000, power_w=400.0)
    assert delta == EnergyDelta(pytest.approx(4000.0), Method.INTEGRATED)


def test_a_reset_that_looks_like_a_wrap_is_caught_by_max_power() -> None:
    counter = rapl(max_power_w=400.0)
    counter.update(0.0, 200_000_000)
    assert counter.update(10.0, 100_000_000) is None  # backwards by 100 J: "wrap" would mean 262 kJ
    assert counter.resets == 1


@pytest.mark.parametrize("later", [100.0, 99.0])
def test_time_that_does_not_advance_is_a_gap(later: float) -> None:
    counter = rapl()
    counter.update(100.0, 1_000_000)
    assert counter.update(later, 2_000_000) is None
    assert counter.update(later + 1, 3_000_000) == EnergyDelta(pytest.approx(1.0), Method.MEASURED)


def test_a_reading_above_the_wrap_never_gives_negative_energy() -> None:
    counter = EnergyCounter(UJ, wrap=100)
    counter.update(0.0, 250)  # a counter that disagrees with its reported max_energy_range_uj
    delta = counter.update(1.0, 10)
    assert delta is None or delta.joules >= 0


@settings(max_examples=200)
@given(
    wrap=st.integers(min_value=1_000, max_value=2**32),
    start=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=1.0, exclude_max=True), st.floats(min_value=0.01, max_value=60)
        ),
        min_size=1,
        max_size=50,
    ),
)
def test_deltas_sum_to_the_true_energy(wrap: int, start: float, steps: list[tuple[float, float]]) -> None:
    """Whatever the wraps, as long as the counter moves less than one range per step."""
    counter = EnergyCounter(UJ, wrap=wrap)
    true_units = 0
    value = int(start * wrap)
    time_s = 1000.0
    counter.update(time_s, value)
    measured = 0.0
    for fraction, elapsed in steps:
        units = int(fraction * wrap)
        true_units += units
        value = (value + units) % wrap
        time_s += elapsed
        delta = counter.update(time_s, value)
        assert delta is not None
        assert delta.method is Method.MEASURED
        measured += delta.joules
    assert measured == pytest.approx(true_units * UJ, rel=1e-9, abs=1e-9)


readings = st.tuples(
    st.floats(min_value=0.001, max_value=100),
    st.one_of(st.none(), st.integers(min_value=0, max_value=99_999)),
    st.one_of(st.none(), st.floats(min_value=-50, max_value=2_000, allow_nan=False)),
)


@given(
    wrap=st.one_of(st.none(), st.just(100_000)),
    max_power_w=st.one_of(st.none(), st.floats(min_value=1, max_value=1_000)),
    sequence=st.lists(readings, max_size=40),
)
def test_never_negative(wrap: int | None, max_power_w: float | None, sequence: list) -> None:
    counter = EnergyCounter(1e-3, wrap=wrap, max_power_w=max_power_w)
    time_s = 0.0
    for elapsed, value, power_w in sequence:
        time_s += elapsed
        delta = counter.update(time_s, value, power_w)
        assert delta is None or (delta.joules >= 0 and math.isfinite(delta.joules))
