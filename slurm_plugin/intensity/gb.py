"""GB Carbon Intensity API (NESO): half-hourly national or regional intensity for Great Britain.

National slots carry an `actual` (estimated actual, null until it arrives) and a `forecast`; regional
slots are forecast-only. Values cover generation only, so the scope is "direct", not lifecycle.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from slurm_plugin import config
from slurm_plugin.intensity import EmissionFactor, Gas, IntensityPoint, http
from slurm_plugin.intensity.http import ProviderError, ShapeError

NAME = "gb"
GAS: Gas = "CO2"  # "CO2 emissions related to electricity generation only" (the API's methodology)
DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
MINUTE = timedelta(minutes=1)


class CarbonIntensityGB:
    """National series by default; `region_id` (1-17) or an outward `postcode` selects a region."""

    name = NAME
    scope: EmissionFactor = "direct"
    max_range = timedelta(days=14)  # docs: "The maximum date range is limited to 14 days"

    def __init__(
        self,
        provider: config.Provider,
        intensity: config.Intensity,
        session: requests.Session | None = None,
    ):
        self.zone = provider.zone
        self.base_url = (provider.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.region_id = provider.region_id  # wins over postcode when both are set
        self.postcode = _outward(provider.postcode, self.base_url) if provider.postcode else None
        self.timeout_s = intensity.timeout_s
        self.session = session or http.make_session(intensity)
        self.notes: list[str] = []

    @property
    def regional(self) -> bool:
        return self.region_id is not None or self.postcode is not None

    def fetch(self, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Half-hour points overlapping [start, end); forecasts are flagged as such."""
        start, end = http.check_range(start, end, self.max_range)
        url = self._url(_minutes(start, up=False), _minutes(end, up=True))
        headers = {"Accept": "application/json"}
        body = http.get_json(self.session, NAME, url, timeout_s=self.timeout_s, headers=headers)
        try:
            slots, where = self._slots(body)
            fetched_at = datetime.now(UTC)
            points = [self._point(slot, f"{where}[{i}]", fetched_at) for i, slot in enumerate(slots)]
        except ShapeError as exc:
            raise ProviderError(NAME, url, str(exc)) from None
        kept = (p for p in points if p is not None and http.overlaps(p.start, p.end, start, end))
        return sorted(kept, key=lambda p: p.start)

    def _url(self, frm: str, to: str) -> str:
        """The range endpoint for the national series, a region id or an outward postcode."""
        if self.region_id is not None:
            return f"{self.base_url}/regional/intensity/{frm}/{to}/regionid/{self.region_id}"
        if self.postcode is not None:
            return f"{self.base_url}/regional/intensity/{frm}/{to}/postcode/{self.postcode}"
        return f"{self.base_url}/intensity/{frm}/{to}"

    def _slots(self, body: Any) -> tuple[list[Any], str]:
        """The half-hour slots and their JSON path, from a national or either regional shape."""
        data = http.field(body, "data", "$")
        if not self.regional:
            return http.items(data, "$.data"), "$.data"
        # The docs show a one-region list; the live API answers a region object (clients read
        # response["data"]["data"], e.g. ImperialCollegeLondon/carbon intensity.py). Accept both.
        where = "$.data"
        if isinstance(data, list):
            if len(data) != 1:
                raise ShapeError(f"$.data holds {len(data)} regions, expected 1")
            data, where = data[0], "$.data[0]"
        answered = data.get("regionid") if isinstance(data, dict) else None
        if self.region_id is not None and answered is not None and answered != self.region_id:
            raise ShapeError(f"answer is for region {answered!r}, asked for {self.region_id}")
        return http.items(http.field(data, "data", where), f"{where}.data"), f"{where}.data"

    def _point(self, slot: Any, where: str, fetched_at: datetime) -> IntensityPoint | None:
        """One slot: national `actual` when not null, else `forecast` (flagged); None when both null."""
        start = http.timestamp(http.field(slot, "from", where), f"{where}.from")
        end = http.timestamp(http.field(slot, "to", where), f"{where}.to")
        if end <= start:
            raise ShapeError(f"{where} ends before it starts")
        intensity = http.field(slot, "intensity", where)
        forecast = http.number(http.field(intensity, "forecast", f"{where}.intensity"), f"{where}.forecast")
        actual = None if self.regional else http.number(intensity.get("actual"), f"{where}.actual")
        value = actual if actual is not None else forecast
        if value is None:
            return None
        return IntensityPoint(
            zone=self.zone,
            start=start,
            end=end,
            g_per_kwh=value,
            source=NAME,
            scope=self.scope,
            forecast=actual is None,
            fetched_at=fetched_at,
        )


def _minutes(moment: datetime, *, up: bool) -> str:
    """UTC time in the API's YYYY-MM-DDThh:mmZ, rounded down (or `up`) to a whole minute."""
    floor = moment.replace(second=0, microsecond=0)
    return (floor + MINUTE if up and floor != moment else floor).strftime("%Y-%m-%dT%H:%MZ")


def _outward(postcode: str, base_url: str) -> str:
    """The outward part of a UK postcode ("RG41 1AA" -> "RG41"); the API takes nothing more."""
    outward = postcode.split()[0].upper() if postcode.split() else ""
    if not (2 <= len(outward) <= 4 and outward.isalnum() and outward[0].isalpha()):
        raise ProviderError(NAME, base_url, f"postcode {postcode!r} has no valid outward code (e.g. RG41)")
    return outward
