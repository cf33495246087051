"""How far each figure may be off: a band per energy method and per intensity rung, and how bands combine.

A module of its own below every package (like `methods`): accounting writes the bands with each
footprint month, storage's migration fills them for months stored before, query and reports show them.
The bands and their sources are in docs/methodology.md (#uncertainty). The rule is conservative on
purpose: a band is a pair of factors (low, high) on the central value, and bands are never assumed to
be independent. Components of a job, parts, jobs, groups and months add their lows and their highs
(the errors of one sensor model, one attribution policy or one yearly factor are systematic: they do
not average out across jobs), and energy and intensity combine as the product of their bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

VERSION = "1"  # the bands below; a change of any factor is a new version


@dataclass(frozen=True, slots=True)
class Band:
    """The true value lies in [low × figure, high × figure]; `basis` says why these factors."""

    low: float
    high: float
    basis: str


# Per method flag (methods.Method): how the joules were obtained.
ENERGY: dict[str, Band] = {
    "measured": Band(0.90, 1.10, "an energy counter: RAPL tracks plug power, DRAM by an offset; NVML"),
    "integrated": Band(0.80, 1.20, "NVML power readings integrated: ±5 W stated, 25 % of time sampled"),
    "apportioned": Band(0.70, 1.30, "a share of a node counter: counter band plus the split policy's"),
    "estimated": Band(0.50, 2.00, "power model (TDP × utilisation, W per GB): TDP is not the power drawn"),
}
# Per rung of the intensity ladder (accounting.footprint.RUNGS).
INTENSITY: dict[str, Band] = {
    "measured_series": Band(0.90, 1.10, "the zone's series at the time: itself a model of generation"),
    "forecast_series": Band(0.70, 1.30, "a forecast: GB's national one erred 7.1 % on average, s.d. 29 %"),
    "zone_yearly": Band(0.60, 1.40, "a yearly average for an hour: hours range widely around it"),
    "country_yearly": Band(0.50, 1.50, "a country's yearly average: sub-national zones and imports ignored"),
    "constant": Band(0.50, 1.50, "a configured constant, taken as a yearly average"),
    "world": Band(0.04, 2.80, "the world average: countries range 20.8-1,306 g/kWh in the bundled table"),
}
WIDEST_ENERGY = ENERGY["estimated"]  # for joules whose method is unknown


@dataclass(frozen=True, slots=True)
class Bounds:
    """The low and high ends of IT energy, facility energy and CO2e (joules, grams)."""

    it_energy_low_j: float = 0.0
    it_energy_high_j: float = 0.0
    facility_energy_low_j: float = 0.0
    facility_energy_high_j: float = 0.0
    co2e_low_g: float = 0.0
    co2e_high_g: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__slots__}


def energy_factors(by_method_j: Mapping[str, float]) -> tuple[float, float]:
    """The (low, high) factors of energy made of these joules per method: each method's band weighted by
    its joules (linear: errors of one method are not assumed to cancel those of another); (1, 1) for no
    energy."""
    total = sum(j for j in by_method_j.values() if j > 0)
    if total <= 0:
        return 1.0, 1.0
    low = sum(j * ENERGY.get(m, WIDEST_ENERGY).low for m, j in by_method_j.items() if j > 0)
    high = sum(j * ENERGY.get(m, WIDEST_ENERGY).high for m, j in by_method_j.items() if j > 0)
    return low / total, high / total


def bounds(
    it_energy_j: float,
    facility_energy_j: float,
    by_method_j: Mapping[str, float],
    co2e_by_rung_g: Mapping[str, float],
) -> Bounds:
    """The bounds of one footprint (or one month of it): energy by its methods' factors, CO2e per rung as
    energy factor × the rung's intensity factor (the product of the bounds, the widest combination)."""
    low, high = energy_factors(by_method_j)
    widest = INTENSITY["world"]
    co2e_low = sum(g * low * INTENSITY.get(r, widest).low for r, g in co2e_by_rung_g.items())
    co2e_high = sum(g * high * INTENSITY.get(r, widest).high for r, g in co2e_by_rung_g.items())
    return Bounds(
        it_energy_j * low,
        it_energy_j * high,
        facility_energy_j * low,
        facility_energy_j * high,
        co2e_low,
        co2e_high,
    )


def describe() -> dict[str, object]:
    """The bands and the rule, as a report's metadata states them."""
    return {
        "version": VERSION,
        "rule": "lows and highs add across components, parts, jobs, groups and months; energy and "
        "intensity bounds multiply",
        "energy": {m: {"low": b.low, "high": b.high, "basis": b.basis} for m, b in ENERGY.items()},
        "intensity": {r: {"low": b.low, "high": b.high, "basis": b.basis} for r, b in INTENSITY.items()},
    }
