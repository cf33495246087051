"""Grid carbon intensity: the common point type, and the providers that produce it.

Every provider returns UTC intervals with a value in g/kWh, its zone, source and scope, and whether it
is estimated or a forecast; storage and the footprint join only ever see this type. What the grams are
depends on the source (`GAS`): Electricity Maps and the yearly tables give CO2e, the GB Carbon
Intensity API and Energi Data Service CO2 alone; reports keep the two apart (docs/methodology.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# The emission factor a point uses: lifecycle (upstream emissions included) or direct (combustion only).
# Points, the database column and JSON keep the field name `scope`.
EmissionFactor = Literal["lifecycle", "direct"]
# The gases a source's grams count: CO2 alone, or CO2-equivalents (CO2, CH4, N2O... weighted by GWP100).
Gas = Literal["CO2", "CO2e"]
# Each provider module's GAS, by source name, without importing the providers (and requests) here; a
# source not listed (the yearly tables, a configured constant, the world average) is CO2e.
CO2_ONLY_SOURCES = frozenset({"gb", "energidataservice"})


def gas(source: str) -> Gas:
    """What a source's grams count."""
    return "CO2" if source in CO2_ONLY_SOURCES else "CO2e"


@dataclass(frozen=True, slots=True)
class IntensityPoint:
    zone: str
    start: datetime  # UTC-aware, inclusive
    end: datetime  # UTC-aware, exclusive
    g_per_kwh: float
    source: str  # provider name: "electricitymaps", "gb", "energidataservice", "ember", ...
    scope: EmissionFactor
    estimated: bool = False  # modelled by the provider rather than measured
    forecast: bool = False  # a forecast, to be replaced by actuals when they arrive
    fetched_at: datetime | None = None
