"""Bundled yearly averages: the fallbacks when no time series covers a job.

Two tables ship in slurm_plugin/data (licences in data/LICENSES.md): Electricity Maps 2025 per zone
(ODbL, kept in its own file) and Ember's latest year per country and region (CC BY-SA 4.0 via CO2.js).
Files are read on first use and cached.
"""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources
from typing import NamedTuple

from slurm_plugin.intensity import EmissionFactor

ZONES_FILE = "electricitymaps-yearly-2025-zone-intensity.csv"
COUNTRIES_FILE = "ember-yearly-average-intensity.csv"
ALPHA3_FILE = "iso3166-alpha2-alpha3.csv"
ZONES_SOURCE = "Electricity Maps yearly 2025 (ODbL)"
COUNTRIES_SOURCE = "Ember yearly (CC BY-SA 4.0, via CO2.js)"
WORLD = "WORLD"


class YearlyIntensity(NamedTuple):
    """A yearly average with the label and scope a footprint must record next to it."""

    g_per_kwh: float
    source: str
    scope: EmissionFactor


def zone_yearly(zone: str) -> YearlyIntensity | None:
    """The 2025 average of an Electricity Maps zone ("DE", "DK-DK1"), or None if not in the table."""
    value = _zones().get(zone.strip().upper())
    return None if value is None else YearlyIntensity(value, ZONES_SOURCE, "lifecycle")


def country_yearly(iso3: str) -> YearlyIntensity | None:
    """Ember's latest average for an ISO 3166 alpha-3 country ("DEU") or region ("EU"), or None."""
    value = _countries().get(iso3.strip().upper())
    return None if value is None else YearlyIntensity(value, COUNTRIES_SOURCE, "lifecycle")


def world() -> YearlyIntensity:
    """Ember's world average: the last rung of the fallback ladder."""
    found = country_yearly(WORLD)
    if found is None:
        raise RuntimeError(f"bundled {COUNTRIES_FILE} has no {WORLD} row")
    return found


def country_of_zone(zone: str) -> str | None:
    """The alpha-3 country of an Electricity Maps zone ("DK-DK1" -> "DNK"), or None.

    Zone codes start with the ISO 3166 alpha-2 code of their country ("US-CAL-CISO", "ES-CN-TE");
    the bundled alpha-2 -> alpha-3 table covers those prefixes and Ember's countries (XK -> XKX).
    """
    prefix = zone.strip().upper().split("-", 1)[0]
    return _alpha3().get(prefix) if len(prefix) == 2 else None


@functools.cache
def _zones() -> dict[str, float]:
    return _table(ZONES_FILE, "zone", "g_co2e_per_kwh_lifecycle")


@functools.cache
def _countries() -> dict[str, float]:
    return _table(COUNTRIES_FILE, "iso3_or_region", "g_co2e_per_kwh")


@functools.cache
def _alpha3() -> dict[str, str]:
    return {row["alpha2"]: row["alpha3"] for row in _rows(ALPHA3_FILE)}


def _table(name: str, key: str, column: str) -> dict[str, float]:
    """Key -> value from a bundled CSV; rows with an empty value are left out."""
    return {row[key].strip().upper(): float(row[column]) for row in _rows(name) if row[column].strip()}


def _rows(name: str) -> list[dict[str, str]]:
    text = (resources.files("slurm_plugin") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))
