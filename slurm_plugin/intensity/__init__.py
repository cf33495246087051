"""Grid carbon intensity: the common point type, and the providers that produce it.

Every provider returns UTC intervals with a value in gCO2e/kWh, its zone, source and scope, and
whether it is estimated or a forecast; storage and the footprint join only ever see this type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# The emission factor a point uses: lifecycle (upstream emissions included) or direct (combustion only).
# Points, the database column and JSON keep the field name `scope`.
EmissionFactor = Literal["lifecycle", "direct"]


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
