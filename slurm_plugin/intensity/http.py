"""HTTP plumbing shared by the intensity providers: one retrying session, one error type.

Retries (timeouts, connection errors, 5xx, 429 with Retry-After) are urllib3's `Retry`, mounted on a
`requests.Session`; every failure that reaches a provider becomes one `ProviderError` line.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from slurm_plugin import __version__, config
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.times import utc

USER_AGENT = f"jobcarbon/{__version__} (grid carbon intensity sync; python-requests/{requests.__version__})"
RETRY_STATUSES = (429, 500, 502, 503, 504)
BACKOFF_FACTOR_S = 1.0  # urllib3 waits 0, 2, 4 ... s between consecutive failures
BACKOFF_MAX_S = 60.0
RETRY_AFTER_MAX_S = 120.0  # Energi Data Service asks for ~60 s; a sync must not hang for hours
_SECRET_WORDS = ("token", "key", "auth", "password", "secret", "signature")


class ProviderError(JobcarbonError):
    """A provider could not deliver: one line naming the provider, the URL and the problem."""

    def __init__(self, provider: str, url: str, problem: str, status: int | None = None):
        self.provider = provider
        self.url = redact(url)
        self.problem = " ".join(problem.split())
        self.status = status
        super().__init__(f"{provider}: {self.url}: {self.problem}")


class ShapeError(JobcarbonError):
    """A JSON answer is unusable (missing field, wrong type, other zone); the provider adds name and URL."""


class _CappedRetry(Retry):
    """urllib3's Retry, but a Retry-After header never makes us wait longer than RETRY_AFTER_MAX_S."""

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), RETRY_AFTER_MAX_S)


def make_session(intensity: config.Intensity) -> requests.Session:
    """A session that retries GETs up to `intensity.max_retries` times and names jobcarbon."""
    retry = _CappedRetry(
        total=max(0, intensity.max_retries),
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        backoff_factor=BACKOFF_FACTOR_S,
        backoff_max=BACKOFF_MAX_S,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer comes back, so the error can name its status
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def get_json(
    session: requests.Session,
    provider: str,
    url: str,
    *,
    timeout_s: float,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """GET `url` and decode its JSON body; anything else raises ProviderError."""
    shown = display_url(url, params)
    try:
        response = session.get(url, params=params, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise ProviderError(provider, shown, _describe(exc, timeout_s)) from None
    if response.status_code != 200:
        problem = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
        raise ProviderError(provider, shown, problem, status=response.status_code)
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderError(provider, shown, f"malformed JSON: {exc}") from None


def display_url(url: str, params: Mapping[str, str] | None = None) -> str:
    """The URL a GET with `params` would request, for error messages (redacted by ProviderError)."""
    return requests.Request("GET", url, params=dict(params or {})).prepare().url or url


def _describe(exc: requests.RequestException, timeout_s: float) -> str:
    """Name a transport failure briefly; urllib3 hides read timeouts inside ConnectionError."""
    text = str(exc)
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return f"timed out after {timeout_s:g} s (retries exhausted)"
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return f"connection failed: {reason or text}"[:300]
    return f"request failed: {type(exc).__name__}: {text[:200]}"


def redact(url: str) -> str:
    """The URL without credentials: no user:password, and secret-looking query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = [
        (name, "***" if any(word in name.lower() for word in _SECRET_WORDS) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=':,[]{}"*'), ""))


def check_range(start: datetime, end: datetime, max_range: timedelta) -> tuple[datetime, datetime]:
    """Both ends as UTC; a naive, reversed or too long range is a caller bug, not a provider failure."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("intensity ranges need timezone-aware datetimes")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise ValueError(f"empty range {start.isoformat()} .. {end.isoformat()}")
    if end - start > max_range:
        raise ValueError(f"range {end - start} is longer than the provider's {max_range}")
    return start, end


def field(obj: Any, key: str, where: str) -> Any:
    """`obj[key]`, or ShapeError naming the JSON path when `obj` is no object or lacks the key."""
    if not isinstance(obj, dict):
        raise ShapeError(f"{where} is {type(obj).__name__}, expected an object")
    if key not in obj:
        raise ShapeError(f"missing field {where}.{key}")
    return obj[key]


def items(obj: Any, where: str) -> list[Any]:
    """`obj` as a list, or ShapeError."""
    if not isinstance(obj, list):
        raise ShapeError(f"{where} is {type(obj).__name__}, expected a list")
    return obj


def number(value: Any, where: str) -> float | None:
    """A finite, non-negative intensity; None for JSON null (no data for that slot)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeError(f"{where} is {value!r}, expected a number")
    if not 0 <= value < float("inf"):
        raise ShapeError(f"{where} is {value!r}, expected a non-negative number")
    return float(value)


def timestamp(value: Any, where: str) -> datetime:
    """An ISO 8601 time as UTC; a time without offset is taken as UTC (Energi Data Service)."""
    if not isinstance(value, str):
        raise ShapeError(f"{where} is {value!r}, expected an ISO 8601 time")
    try:
        return utc(value)
    except ValueError:
        raise ShapeError(f"{where} is {value!r}, expected an ISO 8601 time") from None


def overlaps(point_start: datetime, point_end: datetime, start: datetime, end: datetime) -> bool:
    """Whether [point_start, point_end) and [start, end) share any time."""
    return point_start < end and point_end > start
