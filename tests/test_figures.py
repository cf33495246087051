"""Numbers a person reads: significant figures and one unit per column, by hand-picked values."""

from __future__ import annotations

import pytest

from slurm_plugin import figures


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.00307, "0.00307"), (0.0031, "0.00310"), (1.5, "1.50"), (999.6, "1000"), (12345, "12300"), (0, "0")],
)
def test_sig_shows_three_significant_figures_without_an_exponent(value: float, text: str) -> None:
    assert figures.sig(value) == text


def test_car_km_keeps_the_digits_it_has() -> None:
    # the document once rounded 0.00307 km to 4 decimals (0.0031), which printed as "0.00310"
    assert figures.sig(figures.round_sig(0.328 / 106.8)) == "0.00307"


@pytest.mark.parametrize(
    ("joules", "text"), [(12.0, "12.0 J"), (3600.0, "1.00 Wh"), (5.4e5, "150 Wh"), (7.2e6, "2.00 kWh")]
)
def test_a_quantity_takes_its_own_unit_in_a_sentence(joules: float, text: str) -> None:
    assert figures.energy(joules) == text
    assert figures.mass(2500.0) == "2.50 kg"


def test_an_energy_column_has_one_unit_chosen_by_its_largest_value() -> None:
    # a GPU job: CPU 216 Wh, DRAM 18 Wh and 0.022 J, total 1.59 kWh: all in kWh
    unit, cells = figures.unit_column([777600.0, 64800.0, 0.022, 5724000.0, None], figures.ENERGY_UNITS)
    assert unit == "kWh"
    assert cells == ["0.216", "0.0180", "<0.0001", "1.59", "-"]


def test_a_small_jobs_column_stays_in_joules() -> None:
    assert figures.unit_column([40.0, 0.0220, 0.0], figures.ENERGY_UNITS) == ("J", ["40.0", "0.022", "0"])


def test_documents_keep_the_digits_of_a_small_footprint() -> None:
    # a 2 s job's 0.0054321 g: 4 decimals kept 0.0054, which then printed as a false "0.00540"
    assert figures.kept(0.0054321) == 0.0054321
    assert figures.sig(figures.kept(0.0054321)) == "0.00543"
    assert figures.kept(407.058812) == 407.059
