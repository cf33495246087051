"""Energi Data Service (Energinet): 5-minute CO2 intensity of electricity consumed in Denmark.

Recorded scope "direct": CO2Emis counts CO2 from burning fuels for the electricity consumed (the
125 % method splits CHP emissions between power and heat), with no upstream/lifecycle share, so it is
closer to Electricity Maps' `direct` than to `lifecycle`. Energinet notes DK1 and DK2 carry the same
value (both are the national total).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from slurm_plugin import config
from slurm_plugin.intensity import EmissionFactor, Gas, IntensityPoint, http
from slurm_plugin.intensity.http import ProviderError, ShapeError

NAME = "energidataservice"
GAS: Gas = "CO2"  # CO2Emis: "CO2 emission from electricity consumed"
DEFAULT_BASE_URL = "https://api.energidataservice.dk"
ACTUAL, PROGNOSIS = "CO2Emis", "CO2EmisProg"
FIVE_MINUTES = timedelta(minutes=5)
DAY = timedelta(days=1)
DEFAULT_CHUNK = timedelta(days=31)  # 1 request per dataset per minute: a month per request
AREAS = ("DK1", "DK2")


class EnergiDataService:
    """One price area's series: CO2Emis actuals, then CO2EmisProg (forecast) after the last actual."""

    name = NAME
    scope: EmissionFactor = "direct"

    def __init__(
        self,
        provider: config.Provider,
        intensity: config.Intensity,
        session: requests.Session | None = None,
        chunk: timedelta = DEFAULT_CHUNK,
    ):
        self.zone = provider.zone
        self.base_url = (provider.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.area = provider.area or _area_of(provider.zone, self.base_url)
        self.max_range = chunk  # the API has no range limit; few large requests respect its rate limit
        self.timeout_s = intensity.timeout_s
        self.session = session or http.make_session(intensity)
        self.notes: list[str] = []

    def fetch(self, start: datetime, end: datetime) -> list[IntensityPoint]:
        """5-minute points overlapping [start, end); prognosis only where no actual exists yet."""
        start, end = http.check_range(start, end, self.max_range)
        actual = self._dataset(ACTUAL, start, end, forecast=False)
        if not actual:
            return self._dataset(PROGNOSIS, start, end, forecast=True)
        covered = max(p.end for p in actual)
        if covered >= end:
            return actual  # the usual case for backfill: no second request, no rate-limit wait
        prognosis = self._dataset(PROGNOSIS, covered, end, forecast=True)
        return actual + [p for p in prognosis if p.start >= covered]

    def _dataset(
        self, dataset: str, start: datetime, end: datetime, *, forecast: bool
    ) -> list[IntensityPoint]:
        """One request for `dataset`, widened by a day each side, filtered here on Minutes5UTC."""
        url = f"{self.base_url}/dataset/{dataset}"
        params = {
            # The API reads start/end as Danish local time (UTC+1/+2): a day either side of the UTC
            # wall-clock values covers the range whatever the offset, and Minutes5UTC does the rest.
            "start": _wall_clock(start - DAY),
            "end": _wall_clock(end + DAY),
            "filter": json.dumps({"PriceArea": [self.area]}, separators=(",", ":")),
            "columns": "Minutes5UTC,PriceArea,CO2Emission",
        }
        body = http.get_json(self.session, NAME, url, timeout_s=self.timeout_s, params=params)
        try:
            points = self._parse(body, forecast)
        except ShapeError as exc:
            raise ProviderError(NAME, http.display_url(url, params), str(exc)) from None
        kept = (p for p in points if http.overlaps(p.start, p.end, start, end))
        return sorted(kept, key=lambda p: p.start)

    def _parse(self, body: Any, forecast: bool) -> list[IntensityPoint]:
        """Points from `{"records": [...]}`; rows of another price area or with a null value are skipped."""
        rows = http.items(http.field(body, "records", "$"), "$.records")
        fetched_at = datetime.now(UTC)
        points = (self._point(row, f"$.records[{i}]", forecast, fetched_at) for i, row in enumerate(rows))
        return [point for point in points if point is not None]

    def _point(self, row: Any, where: str, forecast: bool, fetched_at: datetime) -> IntensityPoint | None:
        """One 5-minute point; Minutes5UTC is the interval start, written without an offset."""
        if http.field(row, "PriceArea", where) != self.area:
            return None
        start = http.timestamp(http.field(row, "Minutes5UTC", where), f"{where}.Minutes5UTC")
        value = http.number(http.field(row, "CO2Emission", where), f"{where}.CO2Emission")
        if value is None:
            return None
        return IntensityPoint(
            zone=self.zone,
            start=start,
            end=start + FIVE_MINUTES,
            g_per_kwh=value,
            source=NAME,
            scope=self.scope,
            forecast=forecast,
            fetched_at=fetched_at,
        )


def _wall_clock(moment: datetime) -> str:
    """The API's yyyy-MM-ddTHH:mm, from the UTC wall clock (rounded down to the minute)."""
    return moment.strftime("%Y-%m-%dT%H:%M")


def _area_of(zone: str, base_url: str) -> str:
    """The price area named by an Electricity Maps zone such as DK-DK1, when `area` is not set."""
    for area in AREAS:
        if zone.upper().endswith(area):
            return area
    raise ProviderError(NAME, base_url, f"zone {zone!r} names no price area: set area to DK1 or DK2")
