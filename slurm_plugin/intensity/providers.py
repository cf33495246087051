"""The intensity providers behind one Protocol, and the explicit registry that builds them by name."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

import requests

from slurm_plugin import config
from slurm_plugin.intensity import EmissionFactor, IntensityPoint
from slurm_plugin.intensity.electricitymaps import ElectricityMaps
from slurm_plugin.intensity.energidataservice import EnergiDataService
from slurm_plugin.intensity.gb import CarbonIntensityGB


class IntensityProvider(Protocol):
    """One configured series: `fetch` returns points overlapping [start, end), at most `max_range` long.

    `notes` collects one-line warnings worth logging (e.g. a free tier that cannot backfill).
    """

    name: str
    zone: str
    scope: EmissionFactor
    max_range: timedelta
    notes: list[str]

    def fetch(self, start: datetime, end: datetime) -> list[IntensityPoint]: ...


class ProviderFactory(Protocol):
    def __call__(
        self,
        provider: config.Provider,
        intensity: config.Intensity,
        session: requests.Session | None = None,
    ) -> IntensityProvider: ...


PROVIDERS: dict[str, ProviderFactory] = {
    "electricitymaps": ElectricityMaps,
    "gb": CarbonIntensityGB,
    "energidataservice": EnergiDataService,
}


def build(
    provider_cfg: config.Provider,
    intensity_cfg: config.Intensity,
    session: requests.Session | None = None,
) -> IntensityProvider:
    """The provider named by `provider_cfg.name`; `session` replaces the retrying default (tests)."""
    try:
        factory = PROVIDERS[provider_cfg.name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown intensity provider {provider_cfg.name!r} (known: {known})") from None
    return factory(provider_cfg, intensity_cfg, session)
