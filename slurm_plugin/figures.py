"""Numbers a person reads: as many significant figures as the data holds, one unit per column.

Every text output (`jobcarbon <jobid>`, `jobs`, an array's table, `records`) formats its energies and
masses here, so "0.00307 km" is never printed as "0.00310 km" and a column never mixes J and Wh.
Documents (JSON, CSV) keep their numbers; only rendering goes through these functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DIGITS = 3  # significant figures shown: energies and intensities are rarely known better than that
KEPT = 6  # significant figures a document keeps of a derived figure (CO2e), so rendering loses nothing
ENERGY_UNITS = (("MWh", 3.6e9), ("kWh", 3.6e6), ("Wh", 3600.0), ("J", 1.0))
MASS_UNITS = (("t", 1e6), ("kg", 1e3), ("g", 1.0))
Units = Sequence[tuple[str, float]]


def round_sig(value: float, digits: int = DIGITS) -> float:
    """`value` rounded to `digits` significant figures (for documents that carry a derived figure)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def kept(value: float) -> float:
    """A derived figure as documents carry it: KEPT significant figures, however small (0.0054321 g is
    not 0.0054, which would print as a false "0.00540")."""
    return round_sig(value, KEPT)


def _decimals(value: float, digits: int) -> int:
    """Decimal places that show `digits` significant figures of `value` (none for large numbers)."""
    if value == 0:
        return 0
    return max(0, digits - 1 - math.floor(math.log10(abs(round_sig(value, digits)))))


def sig(value: float, digits: int = DIGITS) -> str:
    """`digits` significant figures, never an exponent: 0.00307 -> "0.00307", 12345 -> "12300"."""
    if value == 0:
        return "0"
    return f"{round_sig(value, digits):.{_decimals(value, digits)}f}"


def unit_for(largest: float, units: Units) -> tuple[str, float]:
    """The largest unit not above `largest` (units listed largest first), else the smallest."""
    return next(((name, per) for name, per in units if abs(largest) >= per), units[-1])


def quantity(value: float, units: Units, digits: int = DIGITS) -> str:
    """One value in its own unit, for a sentence: 5400 J -> "1.50 Wh"."""
    name, per = unit_for(value, units)
    return f"{sig(value / per, digits)} {name}"


def energy(joules: float) -> str:
    return quantity(joules, ENERGY_UNITS)


def mass(grams: float) -> str:
    """A mass of CO2e in g, kg or t."""
    return quantity(grams, MASS_UNITS)


def column(values: Sequence[float | None], digits: int = DIGITS, finer: int = 2) -> list[str]:
    """Cells of one column: each value to `digits` significant figures, but with at most `finer` more
    decimals than its largest value needs, so a negligible part reads "<0.0001" rather than a string of
    zeros or digits nobody measured; None reads "-"."""
    largest = max((abs(v) for v in values if v is not None), default=0.0)
    places = _decimals(largest, digits) + finer
    smallest = 10.0**-places
    cells = []
    for value in values:
        if value is None:
            cells.append("-")
        elif value != 0 and abs(value) < smallest / 2:
            cells.append(f"<{smallest:.{places}f}")
        else:
            cells.append(f"{round_sig(value, digits):.{min(_decimals(value, digits), places)}f}")
    return cells


def unit_column(values: Sequence[float | None], units: Units, digits: int = DIGITS) -> tuple[str, list[str]]:
    """A column of quantities in one unit, chosen by its largest value, and its cells."""
    name, per = unit_for(max((abs(v) for v in values if v is not None), default=0.0), units)
    return name, column([None if v is None else v / per for v in values], digits)
