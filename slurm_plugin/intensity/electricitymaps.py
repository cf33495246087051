"""Electricity Maps carbon intensity (API v3 by default): hourly points for one explicit zone.

`past-range` (paid plans, 10 days per call) backfills; the free tier answers it 401/403 and only
offers `history` (the last 24 h), so a free-tier site must sync at least daily or lose data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from slurm_plugin import config
from slurm_plugin.intensity import EmissionFactor, Gas, IntensityPoint, http
from slurm_plugin.intensity.http import ProviderError, ShapeError
from slurm_plugin.times import iso_z

NAME = "electricitymaps"
GAS: Gas = "CO2e"  # carbonIntensity is gCO2eq/kWh
DEFAULT_BASE_URL = "https://api.electricitymaps.com"
HOUR = timedelta(hours=1)
DENIED = (401, 403)


class ElectricityMaps:
    """One zone's hourly series; the token is read from a root-only file at each fetch, never logged."""

    name = NAME
    max_range = timedelta(days=10)  # docs: past-range is limited to 240 hours at hourly granularity

    def __init__(
        self,
        provider: config.Provider,
        intensity: config.Intensity,
        session: requests.Session | None = None,
    ):
        self.zone = provider.zone
        self.scope: EmissionFactor = provider.emission_factor_type
        self.token_file: Path | None = provider.token_file
        base = (provider.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.url = f"{base}/{provider.api_version}/carbon-intensity"
        self.timeout_s = intensity.timeout_s
        self.session = session or http.make_session(intensity)
        self.notes: list[str] = []
        self._past_range_denied = False
        self._history: list[IntensityPoint] | None = None

    def fetch(self, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Hourly points overlapping [start, end): past-range, else (free tier) what history still has."""
        start, end = http.check_range(start, end, self.max_range)
        if not self._past_range_denied:
            try:
                points = self._get(
                    "past-range", "data", start=iso_z(start, "seconds"), end=iso_z(end, "seconds")
                )
            except ProviderError as exc:
                if exc.status not in DENIED:
                    raise
                self._deny_past_range(exc)
            else:
                return _within(points, start, end)
        if self._history is None:  # one history call per sync: it always covers the same 24 h
            self._history = self._get("history", "history")
        return _within(self._history, start, end)

    def _deny_past_range(self, exc: ProviderError) -> None:
        """Remember the refusal, so later chunks go straight to history, and say what it costs."""
        self._past_range_denied = True
        self.notes.append(
            f"past-range answered HTTP {exc.status} (free tier?): only the last 24 h are available "
            "from history; sync at least daily"
        )

    def _get(self, endpoint: str, key: str, **extra: str) -> list[IntensityPoint]:
        """Call one endpoint and turn the list under `key` into points."""
        url = f"{self.url}/{endpoint}"
        params = {
            "zone": self.zone,
            "emissionFactorType": self.scope,
            "temporalGranularity": "hourly",
            "shouldUseFallbackCallerLookup": "false",  # never let the API guess a zone from our IP
            **extra,
        }
        headers = {"auth-token": self._token(url)}
        body = http.get_json(
            self.session, NAME, url, timeout_s=self.timeout_s, params=params, headers=headers
        )
        try:
            return self._parse(body, key)
        except ShapeError as exc:
            raise ProviderError(NAME, http.display_url(url, params), str(exc)) from None

    def _token(self, url: str) -> str:
        """The API token from `token_file`; errors name the file, never its content."""
        if self.token_file is None:
            raise ProviderError(NAME, url, "no token_file configured")
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ProviderError(NAME, url, f"cannot read token_file {self.token_file}: {reason}") from None
        if not token:
            raise ProviderError(NAME, url, f"token_file {self.token_file} is empty")
        return token

    def _parse(self, body: Any, key: str) -> list[IntensityPoint]:
        """Points from a `{"zone": ..., key: [...]}` answer; a null intensity is a gap, not a zero."""
        answered = body.get("zone") if isinstance(body, dict) else None
        if answered is not None and answered != self.zone:
            raise ShapeError(f"answer is for zone {answered!r}, asked for {self.zone!r}")
        rows = http.items(http.field(body, key, "$"), f"$.{key}")
        fetched_at = datetime.now(UTC)
        points = (self._point(row, f"$.{key}[{i}]", fetched_at) for i, row in enumerate(rows))
        return [point for point in points if point is not None]

    def _point(self, row: Any, where: str, fetched_at: datetime) -> IntensityPoint | None:
        """One hourly point; `datetime` is the start of the hour (API docs)."""
        value = http.number(http.field(row, "carbonIntensity", where), f"{where}.carbonIntensity")
        start = http.timestamp(http.field(row, "datetime", where), f"{where}.datetime")
        factor = row.get("emissionFactorType", self.scope)
        if factor != self.scope:
            raise ShapeError(f"{where}.emissionFactorType is {factor!r}, asked for {self.scope!r}")
        if value is None:
            return None
        return IntensityPoint(
            zone=self.zone,
            start=start,
            end=start + HOUR,
            g_per_kwh=value,
            source=NAME,
            scope=self.scope,
            estimated=row.get("isEstimated") is True,
            fetched_at=fetched_at,
        )


def _within(points: list[IntensityPoint], start: datetime, end: datetime) -> list[IntensityPoint]:
    """The points that overlap [start, end), in time order."""
    return sorted((p for p in points if http.overlaps(p.start, p.end, start, end)), key=lambda p: p.start)
