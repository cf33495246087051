"""Bundled yearly tables: values, labels, scopes, the zone -> country map, and their licences."""

from __future__ import annotations

import csv
from importlib import resources

import pytest

from slurm_plugin.intensity import static
from slurm_plugin.intensity.static import YearlyIntensity

EM = "Electricity Maps yearly 2025 (ODbL)"
EMBER = "Ember yearly (CC BY-SA 4.0, via CO2.js)"
DATA = resources.files("slurm_plugin") / "data"


def rows(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader((DATA / name).read_text(encoding="utf-8").splitlines()))


def test_zone_yearly() -> None:
    assert static.zone_yearly("DE") == YearlyIntensity(342.0, EM, "lifecycle")
    assert static.zone_yearly("DK-DK1") == (112.0, EM, "lifecycle")
    assert static.zone_yearly(" dk-dk2 ") == (144.0, EM, "lifecycle")
    assert static.zone_yearly("XX-NOWHERE") is None


def test_country_yearly_and_world() -> None:
    assert static.country_yearly("DEU") == YearlyIntensity(342.06, EMBER, "lifecycle")
    assert static.country_yearly("dnk") == (143.3, EMBER, "lifecycle")
    assert static.country_yearly("EU") == (213.02, EMBER, "lifecycle")
    assert static.country_yearly("XYZ") is None
    assert static.world() == YearlyIntensity(472.94, EMBER, "lifecycle")


@pytest.mark.parametrize(
    ("zone", "iso3"),
    [
        ("DE", "DEU"),
        ("DK-DK1", "DNK"),
        ("US-CAL-CISO", "USA"),
        ("ES-CN-TE", "ESP"),
        ("GB", "GBR"),
        ("XK", "XKX"),
        ("UA", "UKR"),  # no Electricity Maps 2025 row, but Ember has the country
        ("ZZ", None),
        ("DEU", None),
        ("", None),
    ],
)
def test_country_of_zone(zone: str, iso3: str | None) -> None:
    assert static.country_of_zone(zone) == iso3


def test_every_zone_prefix_and_every_ember_country_is_mapped() -> None:
    alpha3 = {row["alpha2"]: row["alpha3"] for row in rows(static.ALPHA3_FILE)}
    prefixes = {row["zone"].split("-")[0] for row in rows(static.ZONES_FILE)}
    assert prefixes <= alpha3.keys()
    ember = {row["iso3_or_region"] for row in rows(static.COUNTRIES_FILE)}
    countries = {code for code in ember if len(code) == 3 and code.isalpha() and code != "EU"}
    assert countries <= set(alpha3.values())
    assert len(alpha3) == len(set(alpha3.values()))  # one alpha-3 per alpha-2, no duplicates


def test_every_bundled_table_has_its_licence_written_down() -> None:
    licences = (DATA / "LICENSES.md").read_text(encoding="utf-8")
    for name in (static.ZONES_FILE, static.COUNTRIES_FILE, static.ALPHA3_FILE):
        assert f"## {name}" in licences
    assert "Open Database License (ODbL)" in licences
    assert "CC BY-SA 4.0" in licences
    assert EM in licences
    assert EMBER in licences
