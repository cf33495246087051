"""Sync: backfill in chunks, upsert revisions, and keep going when one provider fails."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slurm_plugin import config
from slurm_plugin.intensity import IntensityPoint, providers
from slurm_plugin.intensity.electricitymaps import ElectricityMaps
from slurm_plugin.intensity.energidataservice import EnergiDataService
from slurm_plugin.intensity.gb import CarbonIntensityGB
from slurm_plugin.intensity.sync import SyncResult, sync
from tests.intensity.conftest import TOKEN, FakeApi, Reply, fixture_json, intensity_cfg, reply_json

NOW = datetime(2026, 1, 20, 12, 40, 17, tzinfo=UTC)
WINDOW_START = datetime(2026, 1, 19, 12, tzinfo=UTC)  # NOW - 1 day, down to the hour


class MemoryStore:
    """The storage protocol sync relies on, keyed like the real store: (zone, source, start)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, datetime], IntensityPoint] = {}

    def upsert_intensity(self, points: Iterable[IntensityPoint]) -> int:
        count = 0
        for point in points:
            self.rows[(point.zone, point.source, point.start)] = point
            count += 1
        return count

    def intensity(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        found = (p for p in self.rows.values() if p.zone == zone and p.start < end and p.end > start)
        return sorted(found, key=lambda p: p.start)


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, level: str, message: str) -> None:
        self.lines.append((level, message))


def site(api: FakeApi, token_file: Path, **intensity: object) -> config.Config:
    """Three providers, all served by the loopback API; no retries unless asked."""
    em = config.Provider(name="electricitymaps", zone="DE", base_url=api.url, token_file=token_file)
    gb = config.Provider(name="gb", zone="GB", base_url=api.url)
    eds = config.Provider(name="energidataservice", zone="DK-DK1", base_url=api.url)
    settings = {"providers": (em, gb, eds), "backfill_days": 1.0, "max_retries": 0, **intensity}
    return config.Config(intensity=intensity_cfg(**settings))


def route_gb_and_eds(api: FakeApi) -> None:
    api.route("/intensity/", reply_json("gb-national.json"))
    api.route("/dataset/CO2Emis", reply_json("eds-co2emis.json"))
    api.route("/dataset/CO2EmisProg", reply_json("eds-co2emisprog.json"))


def test_one_failing_provider_is_logged_and_the_others_still_sync(api: FakeApi, token_file: Path) -> None:
    api.route("/v3/carbon-intensity/past-range", Reply(500))
    route_gb_and_eds(api)
    store, log = MemoryStore(), Log()
    results = sync(store, site(api, token_file), now=NOW, log=log)

    em_error = f"electricitymaps: {api.url}/v3/carbon-intensity/past-range?zone=DE"
    assert [(r.provider, r.zone, r.ok, r.points) for r in results] == [
        ("electricitymaps", "DE", False, 0),
        ("gb", "GB", True, 3),
        ("energidataservice", "DK-DK1", True, 7 + 2),  # 7 actual DK1 rows, then 2 prognosis rows
    ]
    assert results[0].error is not None
    assert results[0].error.startswith(em_error)
    assert results[0].error.endswith(": HTTP 500 Internal Server Error")
    assert {(r.start, r.end) for r in results} == {(WINDOW_START, NOW)}
    errors = [message for level, message in log.lines if level == "error"]
    assert len(errors) == 1
    assert errors[0] == f"intensity sync electricitymaps zone DE: failed after 0 points: {results[0].error}"
    assert TOKEN not in "".join(message for _, message in log.lines)
    assert [level for level, _ in log.lines] == ["error", "info", "info"]


def test_points_land_in_the_store_with_their_flags(api: FakeApi, token_file: Path) -> None:
    api.route("/v3/carbon-intensity/past-range", Reply(500))
    route_gb_and_eds(api)
    store = MemoryStore()
    sync(store, site(api, token_file), now=NOW)
    gb = store.intensity("GB", WINDOW_START, NOW)
    assert [(p.start.hour, p.start.minute, p.g_per_kwh, p.forecast) for p in gb] == [
        (11, 30, 185.0, False),
        (12, 0, 180.0, False),
        (12, 30, 175.0, True),
    ]
    dk = store.intensity("DK-DK1", WINDOW_START, NOW)
    assert [(p.start.strftime("%H:%M"), p.g_per_kwh, p.forecast) for p in dk][-3:] == [
        ("00:20", 141.0, False),  # the actual wins over the 00:20 prognosis (139)
        ("00:25", 137.0, True),
        ("00:30", 134.0, True),
    ]


def test_backfill_is_cut_into_chunks_of_the_providers_max_range(api: FakeApi, token_file: Path) -> None:
    api.route("/intensity/", reply_json("gb-national.json"))
    cfg = site(api, token_file, backfill_days=20.0)
    cfg = replace(cfg, intensity=replace(cfg.intensity, providers=cfg.intensity.providers[1:2]))
    (result,) = sync(MemoryStore(), cfg, now=NOW)
    assert result.ok
    assert [seen.path for seen in api.hits()] == [
        "/intensity/2025-12-31T12:00Z/2026-01-14T12:00Z",
        "/intensity/2026-01-14T12:00Z/2026-01-20T12:41Z",
    ]


def test_revised_values_overwrite_earlier_forecasts(api: FakeApi, token_file: Path) -> None:
    early = fixture_json("gb-national.json")
    early["data"][1]["intensity"]["actual"] = None  # 12:00 slot: only a forecast (182) so far
    api.route("/intensity/", reply_json(early), reply_json("gb-national.json"))
    cfg = site(api, token_file)
    cfg = replace(cfg, intensity=replace(cfg.intensity, providers=cfg.intensity.providers[1:2]))
    store = MemoryStore()
    sync(store, cfg, now=NOW)
    noon = store.rows[("GB", "gb", datetime(2026, 1, 20, 12, tzinfo=UTC))]
    assert (noon.g_per_kwh, noon.forecast) == (182.0, True)
    sync(store, cfg, now=NOW)
    noon = store.rows[("GB", "gb", datetime(2026, 1, 20, 12, tzinfo=UTC))]
    assert (noon.g_per_kwh, noon.forecast) == (180.0, False)
    assert len(store.rows) == 3


def test_free_tier_fallback_is_a_success_with_a_warning(api: FakeApi, token_file: Path) -> None:
    api.route("/v3/carbon-intensity/past-range", Reply(403))
    api.route("/v3/carbon-intensity/history", reply_json("em-history.json"))
    cfg = site(api, token_file)
    cfg = replace(cfg, intensity=replace(cfg.intensity, providers=cfg.intensity.providers[:1]))
    log = Log()
    (result,) = sync(MemoryStore(), cfg, now=datetime(2026, 1, 21, 0, 10, tzinfo=UTC), log=log)
    assert (result.ok, result.points) == (True, 4)
    assert len(result.notes) == 1
    assert [level for level, _ in log.lines] == ["warning", "info"]
    assert "only the last 24 h" in log.lines[0][1]


def test_a_bug_in_one_provider_does_not_stop_the_others(api: FakeApi, token_file: Path) -> None:
    route_gb_and_eds(api)

    def build(provider_cfg: config.Provider, intensity_cfg: config.Intensity) -> providers.IntensityProvider:
        if provider_cfg.name == "electricitymaps":
            raise RuntimeError("unexpected\nmulti-line failure")
        return providers.build(provider_cfg, intensity_cfg)

    log = Log()
    results = sync(MemoryStore(), site(api, token_file), now=NOW, log=log, build=build)
    assert [r.ok for r in results] == [False, True, True]
    assert results[0].error == "unexpected multi-line failure"
    assert log.lines[0] == (
        "error",
        "intensity sync electricitymaps zone DE: failed after 0 points: unexpected multi-line failure",
    )


def test_no_providers_means_nothing_to_do() -> None:
    assert sync(MemoryStore(), config.Config(), now=NOW) == []


def test_sync_result_ok_follows_the_error() -> None:
    assert SyncResult("gb", "GB", NOW, NOW).ok
    assert not SyncResult("gb", "GB", NOW, NOW, error="x").ok


def test_registry_is_an_explicit_dict_of_the_three_providers(token_file: Path) -> None:
    registry = providers.PROVIDERS
    assert registry == {
        "electricitymaps": ElectricityMaps,
        "gb": CarbonIntensityGB,
        "energidataservice": EnergiDataService,
    }
    built = providers.build(config.Provider(name="gb", zone="GB"), config.Intensity())
    assert isinstance(built, CarbonIntensityGB)
    assert built.base_url == "https://api.carbonintensity.org.uk"
    em = providers.build(config.Provider(name="electricitymaps", zone="DE"), config.Intensity())
    assert isinstance(em, ElectricityMaps)
    assert em.url == "https://api.electricitymaps.com/v3/carbon-intensity"
    with pytest.raises(ValueError, match="unknown intensity provider 'watttime'"):
        providers.build(config.Provider(name="watttime", zone="X"), config.Intensity())  # type: ignore[arg-type]


def test_window_ends_now_and_starts_on_the_hour(api: FakeApi, token_file: Path) -> None:
    api.route("/intensity/", reply_json({"data": []}))
    cfg = site(api, token_file, backfill_days=0.5)
    cfg = replace(cfg, intensity=replace(cfg.intensity, providers=cfg.intensity.providers[1:2]))
    (result,) = sync(MemoryStore(), cfg, now=NOW)
    assert (result.start, result.end, result.points) == (NOW.replace(hour=0, minute=0, second=0), NOW, 0)
    assert result.start + timedelta(hours=12, minutes=40) <= result.end
