"""Energi Data Service provider against recorded-shape answers on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slurm_plugin import config
from slurm_plugin.intensity.energidataservice import EnergiDataService
from slurm_plugin.intensity.http import ProviderError
from tests.intensity.conftest import FakeApi, Reply, fixture_json, intensity_cfg, reply_json

T0 = datetime(2026, 1, 20, tzinfo=UTC)
MIN5 = timedelta(minutes=5)
ACTUAL = "/dataset/CO2Emis"
PROGNOSIS = "/dataset/CO2EmisProg"


def provider(api: FakeApi, zone: str = "DK-DK1", **changes: object) -> EnergiDataService:
    settings = config.Provider(name="energidataservice", zone=zone, base_url=api.url, **changes)
    return EnergiDataService(settings, intensity_cfg())


def test_actuals_then_prognosis_after_the_last_actual(api: FakeApi) -> None:
    api.route(ACTUAL, reply_json("eds-co2emis.json"))
    api.route(PROGNOSIS, reply_json("eds-co2emisprog.json"))
    points = provider(api).fetch(T0, T0 + 6 * MIN5)
    assert [(p.start, p.end, p.g_per_kwh, p.forecast) for p in points] == [
        (T0, T0 + MIN5, 155.0, False),
        (T0 + MIN5, T0 + 2 * MIN5, 152.0, False),
        (T0 + 2 * MIN5, T0 + 3 * MIN5, 150.0, False),
        (T0 + 3 * MIN5, T0 + 4 * MIN5, 146.0, False),
        (T0 + 4 * MIN5, T0 + 5 * MIN5, 141.0, False),  # the DK2 row (999) is not DK1's
        (T0 + 5 * MIN5, T0 + 6 * MIN5, 137.0, True),  # prognosis only where no actual exists
    ]
    assert {(p.zone, p.source, p.scope, p.estimated) for p in points} == {
        ("DK-DK1", "energidataservice", "direct", False)
    }


def test_query_is_widened_a_day_for_danish_local_time(api: FakeApi) -> None:
    api.route(ACTUAL, reply_json("eds-co2emis.json"))
    api.route(PROGNOSIS, reply_json("eds-co2emisprog.json"))
    provider(api).fetch(T0, T0 + 6 * MIN5)
    actual, prognosis = api.hits(ACTUAL)[0], api.hits(PROGNOSIS)[0]
    assert actual.path == ACTUAL
    assert actual.query == {
        "start": "2026-01-19T00:00",
        "end": "2026-01-21T00:30",
        "filter": '{"PriceArea":["DK1"]}',
        "columns": "Minutes5UTC,PriceArea,CO2Emission",
    }
    # The prognosis is asked only from the end of the last actual (00:25 UTC).
    assert (prognosis.query["start"], prognosis.query["end"]) == ("2026-01-19T00:25", "2026-01-21T00:30")


def test_rows_outside_the_utc_range_are_dropped(api: FakeApi) -> None:
    api.route(ACTUAL, reply_json("eds-co2emis.json"))
    points = provider(api).fetch(T0 - 2 * MIN5, T0 + MIN5)
    assert [(p.start, p.g_per_kwh) for p in points] == [
        (T0 - 2 * MIN5, 160.0),
        (T0 - MIN5, 157.0),
        (T0, 155.0),
    ]
    assert api.hits(PROGNOSIS) == []  # fully covered by actuals: one request only


def test_no_actuals_yet_means_prognosis_only(api: FakeApi) -> None:
    api.route(ACTUAL, reply_json({"total": 0, "dataset": "CO2Emis", "records": []}))
    api.route(PROGNOSIS, reply_json("eds-co2emisprog.json"))
    points = provider(api).fetch(T0 + 5 * MIN5, T0 + 7 * MIN5)
    assert [(p.start, p.g_per_kwh, p.forecast) for p in points] == [
        (T0 + 5 * MIN5, 137.0, True),
        (T0 + 6 * MIN5, 134.0, True),
    ]


def test_area_comes_from_the_zone_unless_set(api: FakeApi) -> None:
    assert provider(api, zone="DK-DK2").area == "DK2"
    assert provider(api, zone="DK-DK2", area="DK1").area == "DK1"
    with pytest.raises(ProviderError, match="zone 'DK' names no price area: set area to DK1 or DK2"):
        provider(api, zone="DK")


def test_rate_limit_waits_as_told_but_never_longer_than_the_cap(
    api: FakeApi, retry_sleeps: list[float]
) -> None:
    api.route(ACTUAL, Reply(429, headers={"Retry-After": "3600"}), reply_json("eds-co2emis.json"))
    points = provider(api).fetch(T0, T0 + MIN5)
    assert [p.g_per_kwh for p in points] == [155.0]
    assert retry_sleeps == [120.0]
    assert len(api.hits(ACTUAL)) == 2


def test_rate_limit_that_persists_is_a_provider_error(api: FakeApi, retry_sleeps: list[float]) -> None:
    api.route(ACTUAL, Reply(429, headers={"Retry-After": "1"}))
    with pytest.raises(ProviderError, match=r"^energidataservice: .*/dataset/CO2Emis\?.*: HTTP 429"):
        provider(api).fetch(T0, T0 + MIN5)
    assert retry_sleeps == [1.0, 1.0]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"PriceArea": "DK1", "CO2Emission": 1.0}, r"missing field \$\.records\[8\]\.Minutes5UTC"),
        ({"Minutes5UTC": "2026-01-20T00:00:00", "PriceArea": "DK1"}, r"missing field .*\.CO2Emission"),
        ({"Minutes5UTC": "20.01.2026 00:00", "PriceArea": "DK1", "CO2Emission": 1}, "expected an ISO 8601"),
        ({"Minutes5UTC": "2026-01-20T00:00:00", "CO2Emission": 1}, r"missing field .*\.PriceArea"),
    ],
)
def test_bad_rows_are_provider_errors(api: FakeApi, row: dict[str, object], problem: str) -> None:
    body = fixture_json("eds-co2emis.json")
    body["records"].append(row)
    api.route(ACTUAL, reply_json(body))
    with pytest.raises(ProviderError, match=problem):
        provider(api).fetch(T0, T0 + MIN5)


def test_truncated_json_is_a_provider_error(api: FakeApi) -> None:
    api.route(ACTUAL, Reply(200, b'{"records": [{"Minutes5UTC": "2026-'))
    with pytest.raises(ProviderError, match="malformed JSON"):
        provider(api).fetch(T0, T0 + MIN5)


def test_chunk_is_a_month_by_default(api: FakeApi) -> None:
    eds = provider(api)
    assert (eds.name, eds.scope, eds.max_range) == ("energidataservice", "direct", timedelta(days=31))
