"""`jobcarbon metrics serve`: month-to-date sums with top N and "other", intensity in use, freshness."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from slurm_plugin.config import Accounting, Config, Database, Metrics
from slurm_plugin.config_location import ConfigError
from slurm_plugin.promtext import parse_listen
from slurm_plugin.query import cluster_metrics
from slurm_plugin.storage import readonly
from tests import jobdb
from tests.jobdb import DAY, HOUR, Job

parser = pytest.importorskip("prometheus_client.parser")

JOBS = [
    Job(301, user="alice", account="physics", start=DAY + 1 * HOUR, rows=30),
    Job(302, user="bob", uid=1001, account="chemistry", start=DAY + 2 * HOUR, rows=20, cpu_w=90.0),
    Job(303, user="carol", uid=1002, account="biology", start=DAY + 3 * HOUR, rows=10, node="node002"),
    Job(304, user="dave", uid=1003, account=None, start=DAY + 4 * HOUR, rows=5, node="node002"),
]
NOW = DAY + 10.5 * HOUR  # within the day of stored intensity, measured until its end


def _settings(url: str, top_n: int = 20) -> Config:
    metrics = Metrics(top_n=top_n, stale_after_s=7 * HOUR)
    return Config(database=Database(url=url), accounting=Accounting(zone="DE", pue=1.2), metrics=metrics)


@pytest.fixture(scope="module")
def url(module_db_url: str) -> str:
    return jobdb.fill(module_db_url, JOBS)


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


def _by(samples: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (metric, labels), value in samples.items() if metric == name}


def _render(url: str, top_n: int = 20, now: float = NOW) -> dict:
    reader = readonly.Reader.open(url)
    try:
        return _samples(cluster_metrics.render(reader, _settings(url, top_n), now))
    finally:
        reader.close()


def test_month_to_date_sums_per_account_and_user_equal_the_stored_footprints(url: str) -> None:
    samples = _render(url)
    reader = readonly.Reader.open(url)
    try:
        parts = reader.rows(
            "SELECT j.account, j.user_name, f.it_energy_j, f.co2e_g FROM footprints f "
            "JOIN job_parts p ON p.id = f.part_id JOIN jobs j ON j.id = p.job WHERE f.is_current = 1"
        )
    finally:
        reader.close()
    energy = _by(samples, "jobcarbon_account_month_energy_joules", "account")
    expected: dict[str, float] = {}
    for part in parts:
        name = part["account"] or cluster_metrics.NO_NAME
        expected[name] = expected.get(name, 0.0) + part["it_energy_j"]
    assert energy == pytest.approx(expected, rel=1e-9)
    co2e = _by(samples, "jobcarbon_user_month_co2e_grams", "user")
    assert sum(co2e.values()) == pytest.approx(sum(p["co2e_g"] for p in parts), rel=1e-9)
    assert set(co2e) == {"alice", "bob", "carol", "dave"}


def test_top_n_names_the_largest_and_sums_the_rest_as_other(url: str) -> None:
    full, top = _render(url), _render(url, top_n=1)
    for kind in ("energy_joules", "co2e_grams"):
        whole = _by(full, f"jobcarbon_account_month_{kind}", "account")
        kept = _by(top, f"jobcarbon_account_month_{kind}", "account")
        assert set(kept) == {"physics", "other"}  # physics used the most energy
        assert kept["physics"] == pytest.approx(whole["physics"])
        assert sum(kept.values()) == pytest.approx(sum(whole.values()))
    assert cluster_metrics.top_with_other({"a": 1.0, "other": 2.0, "b": 3.0}, 1) == [
        ("b", 3.0),
        ("other", 3.0),
    ]
    assert cluster_metrics.top_with_other({"a": 1.0}, 5) == [("a", 1.0)]


def test_intensity_in_use_and_node_freshness(url: str) -> None:
    samples = _render(url)
    slot = next(p for p in jobdb.day_series() if p.start.timestamp() <= NOW < p.end.timestamp())
    name = "jobcarbon_grid_intensity_g_per_kwh"
    intensity = {(dict(k[1])["source"], dict(k[1])["quality"]): v for k, v in samples.items() if k[0] == name}
    assert intensity == {(slot.source, "measured"): slot.g_per_kwh}
    ends = _by(samples, "jobcarbon_grid_intensity_data_end_timestamp_seconds", "zone")
    assert ends == {"DE": DAY + 24 * HOUR}
    newest = _by(samples, "jobcarbon_node_newest_data_timestamp_seconds", "node")
    assert newest == {"node001": DAY + 2 * HOUR + 20 * 60, "node002": DAY + 4 * HOUR + 5 * 60}
    assert samples["jobcarbon_stale_nodes", frozenset()] == 1  # node001: 8 h 10 min old; node002: 6 h 25 min


def test_without_a_series_covering_now_the_yearly_rung_is_in_use(url: str) -> None:
    samples = _render(url, now=DAY + 30 * HOUR)  # the stored day (forecasts included) has ended
    intensity = {k[1]: v for k, v in samples.items() if k[0] == "jobcarbon_grid_intensity_g_per_kwh"}
    yearly = {"zone": "DE", "source": "Electricity Maps yearly 2025 (ODbL)", "quality": "zone_yearly"}
    assert intensity == {frozenset(yearly.items()): 342.0}


@pytest.fixture
def server(url: str) -> Iterator[str]:
    http = cluster_metrics._Server(("127.0.0.1", 0), _settings(url))
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()
    http.server_close()


def test_the_http_endpoint_serves_metrics_and_nothing_else(server: str) -> None:
    with urllib.request.urlopen(f"{server}/metrics", timeout=10) as reply:  # noqa: S310 - http only
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples = _samples(reply.read().decode())
    assert ("jobcarbon_exporter_scrape_seconds", frozenset()) in samples
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server}/", timeout=10)  # noqa: S310 - http only
    assert refused.value.code == 404


def test_a_bad_listen_address_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"metrics.listen 'localhost': expected HOST:PORT"):
        parse_listen("localhost", "metrics.listen")
    assert parse_listen("[::1]:9877", "metrics.listen") == ("::1", 9877)
