"""What each source's grams count: the providers' own GAS, and the report-side lookup that must agree."""

from __future__ import annotations

from slurm_plugin import intensity
from slurm_plugin.intensity import electricitymaps, energidataservice, gb, static


def test_the_co2_only_sources_are_the_providers_that_say_so() -> None:
    providers = (electricitymaps, energidataservice, gb)
    assert {p.NAME for p in providers if p.GAS == "CO2"} == intensity.CO2_ONLY_SOURCES
    assert {p.NAME: intensity.gas(p.NAME) for p in providers} == {p.NAME: p.GAS for p in providers}
    for yearly in (static.ZONES_SOURCE, static.COUNTRIES_SOURCE, "configured constant"):
        assert intensity.gas(yearly) == "CO2e"
