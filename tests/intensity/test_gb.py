"""GB Carbon Intensity provider against recorded-shape answers on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slurm_plugin import config
from slurm_plugin.intensity.gb import CarbonIntensityGB
from slurm_plugin.intensity.http import ProviderError
from tests.intensity.conftest import FakeApi, Reply, fixture_json, intensity_cfg, reply_json

NOON = datetime(2026, 1, 20, 12, tzinfo=UTC)
HALF = timedelta(minutes=30)
NATIONAL = "/intensity/2026-01-20T12:00Z/2026-01-20T13:00Z"
REGIONAL = "/regional/intensity/2026-01-20T12:00Z/2026-01-20T13:00Z"


def provider(api: FakeApi, zone: str = "GB", **changes: object) -> CarbonIntensityGB:
    return CarbonIntensityGB(
        config.Provider(name="gb", zone=zone, base_url=api.url, **changes), intensity_cfg()
    )


def values(points: list) -> list[tuple[object, ...]]:
    return [(p.zone, p.start, p.end, p.g_per_kwh, p.source, p.scope, p.estimated, p.forecast) for p in points]


def test_national_uses_actual_and_falls_back_to_flagged_forecast(api: FakeApi) -> None:
    api.route(NATIONAL, reply_json("gb-national.json"))
    points = provider(api).fetch(NOON, NOON + 2 * HALF)
    assert values(points) == [
        ("GB", NOON, NOON + HALF, 180.0, "gb", "direct", False, False),
        ("GB", NOON + HALF, NOON + 2 * HALF, 175.0, "gb", "direct", False, True),
    ]  # the 11:30-12:00 slot the API adds before `from` is outside the range
    (seen,) = api.hits()
    assert seen.path == NATIONAL
    assert seen.headers["accept"] == "application/json"
    assert seen.query == {}


def test_range_is_sent_in_whole_minutes_covering_it(api: FakeApi) -> None:
    api.route("/intensity/", reply_json("gb-national.json"))
    provider(api).fetch(NOON + timedelta(seconds=30), NOON + timedelta(minutes=59, seconds=1))
    assert api.hits()[0].path == NATIONAL


@pytest.mark.parametrize("fixture", ["gb-regional-object.json", "gb-regional-list.json"])
def test_regional_by_id_reads_both_answer_shapes_as_forecasts(api: FakeApi, fixture: str) -> None:
    api.route(f"{REGIONAL}/regionid/13", reply_json(fixture))
    points = provider(api, zone="GB-13", region_id=13).fetch(NOON, NOON + 2 * HALF)
    assert values(points) == [
        ("GB-13", NOON, NOON + HALF, 120.0, "gb", "direct", False, True),
        ("GB-13", NOON + HALF, NOON + 2 * HALF, 131.0, "gb", "direct", False, True),
    ]


def test_regional_by_postcode_sends_only_the_outward_code(api: FakeApi) -> None:
    api.route(f"{REGIONAL}/postcode/SW1A", reply_json("gb-regional-postcode.json"))
    points = provider(api, zone="GB-LDN", postcode="sw1a 1aa").fetch(NOON, NOON + 2 * HALF)
    assert [(p.start, p.g_per_kwh, p.forecast) for p in points] == [(NOON, 122.0, True)]


def test_region_id_wins_over_postcode(api: FakeApi) -> None:
    api.route(f"{REGIONAL}/regionid/13", reply_json("gb-regional-object.json"))
    provider(api, region_id=13, postcode="RG41").fetch(NOON, NOON + 2 * HALF)
    assert api.hits()[0].path == f"{REGIONAL}/regionid/13"


def test_answer_for_another_region_is_refused(api: FakeApi) -> None:
    api.route(f"{REGIONAL}/regionid/12", reply_json("gb-regional-object.json"))
    with pytest.raises(ProviderError, match="answer is for region 13, asked for 12"):
        provider(api, region_id=12).fetch(NOON, NOON + 2 * HALF)


def test_regional_list_with_several_regions_is_refused(api: FakeApi) -> None:
    body = fixture_json("gb-regional-list.json")
    body["data"].append(body["data"][0])
    api.route(f"{REGIONAL}/regionid/13", reply_json(body))
    with pytest.raises(ProviderError, match=r"\$\.data holds 2 regions, expected 1"):
        provider(api, region_id=13).fetch(NOON, NOON + 2 * HALF)


@pytest.mark.parametrize("postcode", ["", "SW1A1AA", "1AB", "RG-4"])
def test_invalid_postcode_is_a_provider_error(api: FakeApi, postcode: str) -> None:
    with pytest.raises(ProviderError, match="no valid outward code"):
        provider(api, postcode=postcode or " ")


def test_http_500_is_retried_then_a_provider_error(api: FakeApi, retry_sleeps: list[float]) -> None:
    api.route(NATIONAL, Reply(500))
    with pytest.raises(ProviderError) as caught:
        provider(api).fetch(NOON, NOON + 2 * HALF)
    assert str(caught.value) == f"gb: {api.url}{NATIONAL}: HTTP 500 Internal Server Error"
    assert len(api.hits()) == 3


def test_retry_after_on_503_is_honoured(api: FakeApi, retry_sleeps: list[float]) -> None:
    api.route(NATIONAL, Reply(503, headers={"Retry-After": "1"}), reply_json("gb-national.json"))
    assert len(provider(api).fetch(NOON, NOON + 2 * HALF)) == 2
    assert retry_sleeps == [1.0]


def test_malformed_json_is_a_provider_error(api: FakeApi) -> None:
    api.route(NATIONAL, Reply(200, b"<html>maintenance</html>"))
    with pytest.raises(ProviderError, match=r"^gb: .*: malformed JSON"):
        provider(api).fetch(NOON, NOON + 2 * HALF)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda b: b["data"][1]["intensity"].pop("forecast"),
            r"missing field \$\.data\[1\]\.intensity\.forecast",
        ),
        (lambda b: b["data"][2].pop("to"), r"missing field \$\.data\[2\]\.to"),
        (lambda b: b.pop("data"), r"missing field \$\.data$"),
        (lambda b: b["data"][0].update({"from": "yesterday"}), r"\$\.data\[0\]\.from is 'yesterday'"),
        (lambda b: b["data"][1]["intensity"].update({"actual": -5}), r"\$\.data\[1\]\.actual is -5"),
    ],
)
def test_missing_or_wrong_fields_are_provider_errors(api: FakeApi, mutate: object, problem: str) -> None:
    body = fixture_json("gb-national.json")
    mutate(body)  # type: ignore[operator]
    api.route(NATIONAL, reply_json(body))
    with pytest.raises(ProviderError, match=problem):
        provider(api).fetch(NOON, NOON + 2 * HALF)


def test_slot_without_actual_or_forecast_is_skipped(api: FakeApi) -> None:
    body = fixture_json("gb-national.json")
    body["data"][2]["intensity"]["forecast"] = None
    api.route(NATIONAL, reply_json(body))
    assert [p.start for p in provider(api).fetch(NOON, NOON + 2 * HALF)] == [NOON]


def test_max_range_is_fourteen_days(api: FakeApi) -> None:
    gb = provider(api)
    assert (gb.name, gb.scope, gb.max_range) == ("gb", "direct", timedelta(days=14))
    with pytest.raises(ValueError, match="longer than"):
        gb.fetch(NOON, NOON + timedelta(days=14, minutes=1))


def test_connection_refused_is_a_provider_error(unused_port: int) -> None:
    settings = config.Provider(name="gb", zone="GB", base_url=f"http://127.0.0.1:{unused_port}")
    gb = CarbonIntensityGB(settings, intensity_cfg(max_retries=0))
    with pytest.raises(
        ProviderError, match=r"^gb: http://127\.0\.0\.1:\d+/intensity/.*: connection failed: "
    ):
        gb.fetch(NOON, NOON + HALF)
