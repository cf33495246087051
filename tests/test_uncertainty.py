"""The uncertainty bands and their combination (docs/methodology.md#uncertainty), worked by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_plugin import uncertainty
from slurm_plugin.methods import Method


def test_energy_factors_weight_each_methods_band_by_its_joules() -> None:
    # 900 J measured (0.9-1.1) and 100 J apportioned (0.7-1.3): (810 + 70) / 1000, (990 + 130) / 1000
    assert uncertainty.energy_factors({"measured": 900.0, "apportioned": 100.0}) == pytest.approx(
        (0.88, 1.12)
    )
    assert uncertainty.energy_factors({}) == (1.0, 1.0)
    assert uncertainty.energy_factors({"unknown": 10.0}) == (0.5, 2.0)  # an unknown method: the widest band


def test_co2e_bounds_are_the_products_of_the_energy_and_intensity_bounds() -> None:
    band = uncertainty.bounds(
        1000.0,
        1200.0,
        {"measured": 900.0, "apportioned": 100.0},
        {"zone_yearly": 10.0, "measured_series": 5.0},
    )
    assert band.it_energy_low_j == pytest.approx(880.0)
    assert band.facility_energy_high_j == pytest.approx(1344.0)
    assert band.co2e_low_g == pytest.approx(10 * 0.88 * 0.6 + 5 * 0.88 * 0.9)  # 9.24
    assert band.co2e_high_g == pytest.approx(10 * 1.12 * 1.4 + 5 * 1.12 * 1.1)  # 21.84


def test_every_method_and_rung_has_a_band_around_one() -> None:
    assert set(uncertainty.ENERGY) == {str(m) for m in Method}
    assert set(uncertainty.INTENSITY) == {
        "measured_series", "forecast_series", "zone_yearly", "country_yearly", "constant", "world",
    }  # fmt: skip
    for band in (*uncertainty.ENERGY.values(), *uncertainty.INTENSITY.values()):
        assert 0 < band.low < 1 < band.high


joules = st.floats(min_value=0, max_value=1e12, allow_nan=False)


@given(
    st.dictionaries(st.sampled_from(list(uncertainty.ENERGY)), joules, max_size=4),
    st.dictionaries(st.sampled_from(list(uncertainty.INTENSITY)), joules, max_size=6),
)
def test_the_central_figure_lies_inside_its_bounds(by_method: dict, by_rung: dict) -> None:
    it_j = sum(by_method.values())
    co2e_g = sum(by_rung.values())
    band = uncertainty.bounds(it_j, it_j * 1.3, by_method, by_rung)
    assert band.it_energy_low_j <= it_j * (1 + 1e-12)
    assert it_j <= band.it_energy_high_j * (1 + 1e-12)
    assert band.co2e_low_g <= co2e_g * (1 + 1e-12)
    assert co2e_g <= band.co2e_high_g * (1 + 1e-12)


def test_the_worked_example_of_the_methodology() -> None:
    """docs/methodology.md#worked-example-1: 0.5 kWh apportioned, 1.0 kWh measured; 240 g at a measured
    intensity, 180 g at a forecast; PUE 1.2."""
    kwh = 3.6e6
    band = uncertainty.bounds(
        1.5 * kwh, 1.8 * kwh, {"apportioned": 0.5 * kwh, "measured": 1.0 * kwh},
        {"measured_series": 240.0, "forecast_series": 180.0},
    )  # fmt: skip
    assert (band.it_energy_low_j / kwh, band.it_energy_high_j / kwh) == pytest.approx((1.25, 1.75))
    assert (band.facility_energy_low_j / kwh, band.facility_energy_high_j / kwh) == pytest.approx((1.5, 2.1))
    assert (band.co2e_low_g, band.co2e_high_g) == pytest.approx((285.0, 581.0))
