"""`jobcarbon metrics serve`: the cluster's figures from the database for Prometheus.

Month-to-date energy and CO2e per account and per user (the top `metrics.top_n` by energy by name,
the rest summed as "other", so a site with 5,000 users still has a bounded number of series), the
grid intensity in use per zone with its source and quality, and how fresh each node's data is. It
shows every account and user: an admin endpoint, kept on loopback or behind a firewall
(docs/monitoring.md). Each scrape opens a read-only connection and runs four indexed queries.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from slurm_plugin.accounting import join, months
from slurm_plugin.config import Accounting, Config
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.promtext import family, labels, parse_listen
from slurm_plugin.storage import metrics_reads, month_reads, readonly
from slurm_plugin.storage.month_reads import EVERYTHING

OTHER = "other"
NO_NAME = "(none)"  # a job without an account
LOOK_BACK_S = 35 * 86400  # a node without records for this long is no longer listed
SCRAPE_DEADLINE_S = 10.0


class ExporterError(JobcarbonError):
    """The exporter cannot listen where it was told to."""


def render(reader: readonly.Reader, settings: Config, now: float) -> str:
    """The whole exposition for one scrape."""
    month = months.containing(now, settings.accounting.timezone).name
    parts: list[str] = []
    for by in ("account", "user"):
        parts += _month_sums(reader, settings.metrics.top_n, by, month)
    parts += _intensity(reader, settings.accounting, now)
    parts += _freshness(reader, settings.metrics.stale_after_s, now)
    return "".join(parts)


def top_with_other(values: dict[str, float], top_n: int) -> list[tuple[str, float]]:
    """The `top_n` largest by name, then the rest summed as "other" (if there is a rest)."""
    ranked = sorted(((n, v) for n, v in values.items() if n != OTHER), key=lambda item: (-item[1], item[0]))
    named, rest = ranked[:top_n], ranked[top_n:]
    if rest or OTHER in values:
        named.append((OTHER, sum(value for _, value in rest) + values.get(OTHER, 0.0)))
    return named


def _month_sums(reader: readonly.Reader, top_n: int, by: str, month: str) -> Iterator[str]:
    energy: dict[str, float] = {}
    co2e: dict[str, float] = {}
    # Every job (an admin endpoint); clusters sharing the database are summed per name.
    for (_month, _cluster, key), row in month_reads.group_sums(reader, by, [month], EVERYTHING, {}).items():
        energy[_name(key)] = energy.get(_name(key), 0.0) + (row["it_energy_j"] or 0.0)
        co2e[_name(key)] = co2e.get(_name(key), 0.0) + (row["co2e_g"] or 0.0)
    kept = top_with_other(energy, top_n)
    named = [name for name, _ in kept if name != OTHER]
    co2e_kept = [(name, co2e[name]) for name in named]
    if len(kept) > len(named):
        co2e_kept.append((OTHER, sum(co2e.values()) - sum(co2e[name] for name in named)))
    yield from family(
        f"jobcarbon_{by}_month_energy_joules",
        "gauge",
        f"IT energy of finished jobs this calendar month (accounting.timezone) per {by}; top N and other.",
        (f"{labels(**{by: name})} {value}" for name, value in kept),
    )
    yield from family(
        f"jobcarbon_{by}_month_co2e_grams",
        "gauge",
        f"CO2e of finished jobs this calendar month per {by} (facility energy x intensity); top N and other.",
        (f"{labels(**{by: name})} {value}" for name, value in co2e_kept),
    )


def _name(key: Any) -> str:
    return NO_NAME if key is None or key == "" else str(key)


def _intensity(reader: readonly.Reader, settings: Accounting, now: float) -> Iterator[str]:
    """The slot covering now per zone and source; for the site's zone without one, the rung below the
    series that footprints use (zone or country yearly average, constant, world), as its quality."""
    in_use = [
        (row["zone"], row["source"], _quality(row), row["g_per_kwh"])
        for row in metrics_reads.intensity_now(reader, now)
        if row["end_s"] > now
    ]
    if settings.zone and all(zone != settings.zone for zone, *_ in in_use):
        rung = join.fallback(settings)
        in_use.append((settings.zone, rung.source, rung.rung, rung.g_per_kwh))
    yield from family(
        "jobcarbon_grid_intensity_g_per_kwh",
        "gauge",
        "Grid intensity footprints use now per zone: source, and quality measured/estimated/forecast or"
        " the yearly rung used without a series.",
        (f"{labels(zone=zone, source=source, quality=quality)} {g}" for zone, source, quality, g in in_use),
    )
    ends = metrics_reads.intensity_ends(reader)
    yield from family(
        "jobcarbon_grid_intensity_data_end_timestamp_seconds",
        "gauge",
        "Where a zone's stored series (not forecasts) ends (Unix time): old means `intensity sync` fails.",
        (f"{labels(zone=zone)} {end_s}" for zone, end_s in sorted(ends.items())),
    )


def _quality(row: dict[str, Any]) -> str:
    if row["forecast"]:
        return "forecast"
    return "estimated" if row["estimated"] else "measured"


def _freshness(reader: readonly.Reader, stale_after_s: float, now: float) -> Iterator[str]:
    newest = metrics_reads.newest_data_per_node(reader, now - LOOK_BACK_S)
    yield from family(
        "jobcarbon_node_newest_data_timestamp_seconds",
        "gauge",
        "End of the newest record part or running snapshot the database holds per node (Unix time).",
        (f"{labels(node=node)} {newest_s}" for node, newest_s in sorted(newest.items())),
    )
    stale = sum(1 for newest_s in newest.values() if now - newest_s > stale_after_s)
    yield from family(
        "jobcarbon_stale_nodes",
        "gauge",
        "Nodes whose newest data is older than metrics.stale_after_s.",
        (f" {stale}",),
    )


def scrape(settings: Config) -> str:
    """One scrape's text, or a failure that the HTTP handler reports as 503."""
    deadline = time.monotonic() + SCRAPE_DEADLINE_S
    database = settings.database
    reader = readonly.Reader.open(database.url, database.busy_timeout_s, deadline, database.password_file)
    try:
        started = time.perf_counter()
        text = render(reader, settings, time.time())
    finally:
        reader.close()
    took = f" {time.perf_counter() - started:.6f}"
    return text + "".join(
        family("jobcarbon_exporter_scrape_seconds", "gauge", "Time the queries took.", (took,))
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._reply(404, b"see /metrics\n")
            return
        try:
            body = scrape(self.server.settings).encode()
        except readonly.QueryError as exc:
            self._reply(503, f"{exc}\n".encode())
            return
        self._reply(200, body, "text/plain; version=0.0.4; charset=utf-8")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        with contextlib.suppress(OSError):  # the scraper went away
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Successful scrapes are not logged (every 15-60 s); failures are in the scraper's `up`."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: Config):
        self.settings = settings
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)


def serve(settings: Config, listen: str, ready: Callable[[str], None] | None = None) -> None:
    """Answer GET /metrics until interrupted."""
    host, port = parse_listen(listen, "metrics.listen")
    try:
        server = _Server((host, port), settings)
    except OSError as exc:
        raise ExporterError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    with server:
        if ready is not None:
            ready(f"{host}:{server.server_address[1]}")
        server.serve_forever()
