"""Electricity Maps provider against recorded-shape answers on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slurm_plugin import config
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.intensity.electricitymaps import ElectricityMaps
from slurm_plugin.intensity.http import USER_AGENT, ProviderError, redact
from tests.intensity.conftest import TOKEN, FakeApi, Reply, fixture_json, intensity_cfg, reply_json

T0 = datetime(2026, 1, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)
PAST_RANGE = "/v3/carbon-intensity/past-range"
HISTORY = "/v3/carbon-intensity/history"


def provider(api: FakeApi, token_file: Path | None, **changes: object) -> ElectricityMaps:
    settings = {"name": "electricitymaps", "zone": "DE", "base_url": api.url, "token_file": token_file}
    return ElectricityMaps(config.Provider(**{**settings, **changes}), intensity_cfg())


def point(start: datetime, value: float, estimated: bool = False) -> tuple[object, ...]:
    return ("DE", start, start + HOUR, value, "electricitymaps", "lifecycle", estimated, False)


def essentials(points: list[IntensityPoint]) -> list[tuple[object, ...]]:
    return [(p.zone, p.start, p.end, p.g_per_kwh, p.source, p.scope, p.estimated, p.forecast) for p in points]


def test_past_range_gives_hourly_points_inside_the_range(api: FakeApi, token_file: Path) -> None:
    api.route(PAST_RANGE, reply_json("em-past-range.json"))
    points = provider(api, token_file).fetch(T0, T0 + 3 * HOUR)
    assert essentials(points) == [
        point(T0, 412.0),
        point(T0 + HOUR, 398.5),
        point(T0 + 2 * HOUR, 405.0, estimated=True),
    ]  # the 03:00 point lies outside [00:00, 03:00)
    assert all(p.fetched_at is not None and p.fetched_at.tzinfo is UTC for p in points)


def test_request_names_zone_explicitly_and_sends_the_token_as_header(api: FakeApi, token_file: Path) -> None:
    api.route(PAST_RANGE, reply_json("em-past-range.json"))
    provider(api, token_file).fetch(T0, T0 + 3 * HOUR)
    (seen,) = api.hits()
    assert seen.path == PAST_RANGE
    assert seen.query == {
        "zone": "DE",
        "emissionFactorType": "lifecycle",
        "temporalGranularity": "hourly",
        "shouldUseFallbackCallerLookup": "false",
        "start": "2026-01-20T00:00:00Z",
        "end": "2026-01-20T03:00:00Z",
    }
    assert seen.headers["auth-token"] == TOKEN
    assert seen.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("jobcarbon/0.1.0 ")


def test_api_version_and_direct_emission_factor_are_configurable(api: FakeApi, token_file: Path) -> None:
    body = fixture_json("em-past-range.json")
    for row in body["data"]:
        row["emissionFactorType"] = "direct"
    api.route("/v4/carbon-intensity/past-range", reply_json(body))
    em = provider(api, token_file, api_version="v4", emission_factor_type="direct")
    points = em.fetch(T0, T0 + HOUR)
    assert [(p.scope, p.g_per_kwh) for p in points] == [("direct", 412.0)]
    assert api.hits()[0].query["emissionFactorType"] == "direct"


@pytest.mark.parametrize("status", [401, 403])
def test_free_tier_refusal_falls_back_to_history_inside_the_range(
    api: FakeApi, token_file: Path, status: int
) -> None:
    api.route(PAST_RANGE, Reply(status, b'{"error": "not available on your plan"}'))
    api.route(HISTORY, reply_json("em-history.json"))
    em = provider(api, token_file)
    points = em.fetch(T0 + 22 * HOUR, T0 + 24 * HOUR)
    assert essentials(points) == [point(T0 + 22 * HOUR, 366.0), point(T0 + 23 * HOUR, 359.0, True)]
    assert "start" not in api.hits(HISTORY)[0].query
    assert api.hits(HISTORY)[0].query["shouldUseFallbackCallerLookup"] == "false"
    assert len(em.notes) == 1
    assert f"HTTP {status}" in em.notes[0]
    # A later chunk neither asks past-range again nor refetches the same 24 h.
    assert essentials(em.fetch(T0 + 20 * HOUR, T0 + 21 * HOUR)) == [point(T0 + 20 * HOUR, 380.0)]
    assert (len(api.hits(PAST_RANGE)), len(api.hits(HISTORY))) == (1, 1)


def test_refused_history_too_is_a_provider_error(api: FakeApi, token_file: Path) -> None:
    api.route(PAST_RANGE, Reply(401))
    api.route(HISTORY, Reply(401))
    with pytest.raises(ProviderError, match=r"^electricitymaps: http://.*/history\?.*: HTTP 401"):
        provider(api, token_file).fetch(T0, T0 + HOUR)


def test_429_waits_as_retry_after_says_then_succeeds(
    api: FakeApi, token_file: Path, retry_sleeps: list[float]
) -> None:
    api.route(PAST_RANGE, Reply(429, headers={"Retry-After": "1"}), reply_json("em-past-range.json"))
    points = provider(api, token_file).fetch(T0, T0 + HOUR)
    assert [p.g_per_kwh for p in points] == [412.0]
    assert len(api.hits(PAST_RANGE)) == 2
    assert retry_sleeps == [1.0]


def test_a_stalled_server_times_out_after_the_retries(
    api: FakeApi, token_file: Path, retry_sleeps: list[float]
) -> None:
    api.route(PAST_RANGE, Reply(stall=True))
    settings = config.Provider(name="electricitymaps", zone="DE", base_url=api.url, token_file=token_file)
    em = ElectricityMaps(settings, intensity_cfg(timeout_s=0.2, max_retries=1))
    with pytest.raises(ProviderError, match=r"past-range\?.*: timed out after 0\.2 s") as caught:
        em.fetch(T0, T0 + HOUR)
    assert len(api.hits(PAST_RANGE)) == 2
    assert "\n" not in str(caught.value)


def test_malformed_json_is_a_provider_error(api: FakeApi, token_file: Path) -> None:
    api.route(PAST_RANGE, Reply(200, b'{"zone": "DE", "data": [{"carbonIntensity": 4'))
    with pytest.raises(ProviderError, match=r"^electricitymaps: .*past-range.*: malformed JSON"):
        provider(api, token_file).fetch(T0, T0 + HOUR)


def test_missing_field_names_its_json_path(api: FakeApi, token_file: Path) -> None:
    body = fixture_json("em-past-range.json")
    del body["data"][1]["carbonIntensity"]
    api.route(PAST_RANGE, reply_json(body))
    with pytest.raises(ProviderError, match=r"missing field \$\.data\[1\]\.carbonIntensity$"):
        provider(api, token_file).fetch(T0, T0 + 3 * HOUR)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"zone": "FR"}, "answer is for zone 'FR', asked for 'DE'"),
        ({"data": {"carbonIntensity": 1}}, r"\$\.data is dict, expected a list"),
    ],
)
def test_wrong_answers_are_provider_errors(
    api: FakeApi, token_file: Path, change: dict[str, object], problem: str
) -> None:
    api.route(PAST_RANGE, reply_json({**fixture_json("em-past-range.json"), **change}))
    with pytest.raises(ProviderError, match=problem):
        provider(api, token_file).fetch(T0, T0 + HOUR)


def test_wrong_value_types_are_provider_errors(api: FakeApi, token_file: Path) -> None:
    body = fixture_json("em-past-range.json")
    body["data"][0]["carbonIntensity"] = "412"
    api.route(PAST_RANGE, reply_json(body))
    with pytest.raises(ProviderError, match=r"\$\.data\[0\]\.carbonIntensity is '412', expected a number"):
        provider(api, token_file).fetch(T0, T0 + HOUR)


def test_null_intensity_is_a_gap_not_a_zero(api: FakeApi, token_file: Path) -> None:
    body = fixture_json("em-past-range.json")
    body["data"][1]["carbonIntensity"] = None
    api.route(PAST_RANGE, reply_json(body))
    points = provider(api, token_file).fetch(T0, T0 + 3 * HOUR)
    assert [p.start for p in points] == [T0, T0 + 2 * HOUR]


def test_http_500_after_retries_names_status_but_never_the_token(
    api: FakeApi, token_file: Path, retry_sleeps: list[float]
) -> None:
    api.route(PAST_RANGE, Reply(500, b'{"error": "boom"}'))
    with pytest.raises(ProviderError, match=r": HTTP 500 Internal Server Error$") as caught:
        provider(api, token_file).fetch(T0, T0 + HOUR)
    assert len(api.hits(PAST_RANGE)) == 3  # max_retries=2
    assert retry_sleeps == [2.0]  # urllib3 backoff: none before the 1st retry, 2 s before the 2nd
    assert TOKEN not in str(caught.value)
    assert "zone=DE" in str(caught.value)


def test_token_file_problems_name_the_file_only(api: FakeApi, tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="no token_file configured"):
        provider(api, None).fetch(T0, T0 + HOUR)
    missing = tmp_path / "absent.token"
    with pytest.raises(ProviderError, match=f"cannot read token_file {missing}: No such file"):
        provider(api, missing).fetch(T0, T0 + HOUR)
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(ProviderError, match="is empty"):
        provider(api, empty).fetch(T0, T0 + HOUR)
    assert api.hits() == []


def test_range_longer_than_ten_days_is_a_caller_bug(api: FakeApi, token_file: Path) -> None:
    em = provider(api, token_file)
    assert em.max_range == timedelta(days=10)
    with pytest.raises(ValueError, match="longer than"):
        em.fetch(T0, T0 + timedelta(days=10, hours=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        em.fetch(datetime(2026, 1, 20), datetime(2026, 1, 21))


def test_redact_masks_credentials_in_urls() -> None:
    url = "https://user:pw@api.example/v3/x?zone=DE&auth-token=abc&apiKey=k"
    assert redact(url) == "https://api.example/v3/x?zone=DE&auth-token=***&apiKey=***"
    error = ProviderError("electricitymaps", url, "HTTP 500\nInternal")
    assert str(error) == f"electricitymaps: {redact(url)}: HTTP 500 Internal"
