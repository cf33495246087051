"""The agent's Prometheus metrics, written as a node_exporter textfile (no daemon of our own), and
optionally answered to GET /metrics by the agent itself.

The text format is written directly rather than through `prometheus-client`: at 64 jobs that library
cost 10-20 times the CPU per rewrite and 8 MB of RSS (bench/metrics.py, docs/monitoring.md). Each
job's label sets are escaped once, when the job is first seen, so a rewrite only formats numbers.
Energy is a counter per job and per node; a job's series carry its final totals for
`metrics.ended_job_keep_s` after it ends (long enough to be scraped) and then disappear, which
Prometheus marks as the end of the series. The file is replaced atomically (a `.tmp` name
node_exporter ignores, then a rename) and removed when the agent exits.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_plugin import outbox
from slurm_plugin.node.sampler import NodeSampler
from slurm_plugin.node.tracker import COMPONENTS, JobTracker
from slurm_plugin.promtext import escape, family, parse_listen
from slurm_plugin.safefile import atomic_write

FILENAME = "jobcarbon.prom"


@dataclass
class Health:
    """What the agent counts about itself between rewrites."""

    started_s: float = field(default_factory=time.time)
    ticks: int = 0
    tick_seconds: float = 0.0
    last_tick_s: float = 0.0
    last_tick_duration_s: float = 0.0
    deliveries: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    last_delivery_s: float | None = None

    def tick(self, started: float, duration_s: float) -> None:
        self.ticks += 1
        self.tick_seconds += duration_s
        self.last_tick_s = started
        self.last_tick_duration_s = duration_s

    def delivered(self, ok: bool, now: float) -> None:
        self.deliveries["ok" if ok else "failed"] += 1
        if ok:
            self.last_delivery_s = now


@dataclass(slots=True)
class _JobSeries:
    """One job's label sets, escaped once; its totals are read from the tracker on each rewrite."""

    energy: dict[str, str]  # component -> '{jobid=..,component=..}'
    plain: str  # '{jobid=..,user=..,account=..,partition=..}'
    tracker: JobTracker
    gpus: dict[str, str] = field(default_factory=dict)
    ended_s: float | None = None
    shown: tuple[float, ...] = (0.0, 0.0, 0.0)  # the energy last written, per component


def _joules(part: Any) -> float:
    return float((part or {}).get("joules") or 0.0)


class Exposition:
    """The agent's metrics: rendered every `interval_s`, written to `jobcarbon.prom` in node_exporter's
    textfile directory (when there is one) and kept for the agent's own GET /metrics (`text`)."""

    def __init__(self, directory: Path | None, interval_s: float, keep_ended_s: float):
        self.path = directory / FILENAME if directory is not None else None
        self.interval_s = interval_s
        self.keep_ended_s = keep_ended_s
        self.text = b""
        self._jobs: dict[str, _JobSeries] = {}
        self._next_s = 0.0

    def ended(self, tracker: JobTracker, energy: dict[str, Any], now: float) -> None:
        """A job's record is written: show its energy (`energy`, the record's) as the final totals for
        `keep_ended_s`. The record clips the last interval at the job's end; a counter never goes
        down, so a total already shown above it stays (a tick that raced the epilog, milliseconds)."""
        series = self._jobs.get(tracker.info.key) or self._add(tracker)
        for component, shown in zip(COMPONENTS, series.shown, strict=True):
            tracker.energy_j[component] = max(_joules(energy.get(component)), shown)
        devices = (energy.get("gpu") or {}).get("devices") or {}
        for uuid in tracker.gpu_j:
            tracker.gpu_j[uuid] = _joules(devices.get(uuid))
        series.ended_s = now
        self._next_s = 0.0  # its final figures go out now, not at the next interval

    def holding(self, now: float) -> bool:
        """Whether some ended job's final totals are still being shown (the agent stays for them)."""
        return any(s.ended_s is not None and now - s.ended_s < self.keep_ended_s for s in self._jobs.values())

    def update(self, sampler: NodeSampler, health: Health, outbox_dir: Path, now: float) -> None:
        """Rewrite the file when due; a failure is the caller's to log (it never stops sampling)."""
        if now < self._next_s:
            return
        self._next_s = now + self.interval_s
        for key, tracker in sampler.jobs.items():
            if key not in self._jobs:
                self._add(tracker)
        for key in [k for k, s in self._jobs.items() if self._expired(k, s, sampler, now)]:
            del self._jobs[key]
        self.text = render(sampler, health, self._jobs.values(), len(outbox.pending(outbox_dir))).encode()
        for series in self._jobs.values():
            series.shown = tuple(series.tracker.energy_j.values())
        if self.path is not None:
            atomic_write(self.path, self.text, mode=0o644, fsync=False)

    def remove(self) -> None:
        """The agent exits: its series end (an idle node has no jobcarbon series, docs/monitoring.md)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _add(self, tracker: JobTracker) -> _JobSeries:
        info = tracker.info
        labels = f'jobid="{info.job_id}",user="{escape(info.user)}",account="{escape(info.account or "")}"'
        labels += f',partition="{escape(info.partition or "")}"'
        energy = {c: f'{{{labels},component="{c}"}}' for c in COMPONENTS}
        series = _JobSeries(energy, f"{{{labels}}}", tracker)
        self._jobs[info.key] = series
        return series

    def _expired(self, key: str, series: _JobSeries, sampler: NodeSampler, now: float) -> bool:
        if series.ended_s is None:
            return key not in sampler.jobs  # removed without `ended` (the agent closing): nothing to keep
        return now - series.ended_s >= self.keep_ended_s


class Listener:
    """GET /metrics answered from the agent's select loop (`metrics.agent_listen`). A request is read
    as it arrives, without waiting; the answer is the last rendering. Nothing a client sends is
    parsed beyond the request line, and a client that does not take the answer within SEND_WAIT_S is
    dropped, so no scraper can hold up a hook."""

    SEND_WAIT_S = 0.05
    MAX_REQUEST = 4096

    def __init__(self, listen: str):
        host, port = parse_listen(listen, "metrics.agent_listen")
        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(16)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self._requests: dict[socket.socket, bytes] = {}

    def register(self, selector: selectors.BaseSelector) -> None:
        selector.register(self.socket, selectors.EVENT_READ, self)

    def ready(self, selector: selectors.BaseSelector, ready: Any, body: bytes) -> None:
        """`ready` (the listening socket or a client) can be read: accept, or read and answer."""
        if ready is self.socket:
            with contextlib.suppress(BlockingIOError, ConnectionAbortedError):
                client, _ = self.socket.accept()
                client.setblocking(False)
                selector.register(client, selectors.EVENT_READ, self)
                self._requests[client] = b""
            return
        try:
            chunk = ready.recv(self.MAX_REQUEST)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        request = self._requests[ready] + chunk
        self._requests[ready] = request
        if chunk and b"\r\n\r\n" not in request and len(request) < self.MAX_REQUEST:
            return
        self._answer(ready, request, body)
        self._drop(selector, ready)

    def close(self, selector: selectors.BaseSelector) -> None:
        for client in list(self._requests):
            self._drop(selector, client)
        selector.unregister(self.socket)
        self.socket.close()

    def _answer(self, client: socket.socket, request: bytes, body: bytes) -> None:
        if not request.startswith((b"GET /metrics ", b"GET /metrics?")):
            status, body = b"404 Not Found", b"see /metrics\n"
        elif not body:
            status, body = b"503 Service Unavailable", b"no sample yet\n"
        else:
            status = b"200 OK"
        head = b"HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n" % status
        head += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        with contextlib.suppress(OSError):
            client.settimeout(self.SEND_WAIT_S)
            client.sendall(head + body)

    def _drop(self, selector: selectors.BaseSelector, client: socket.socket) -> None:
        selector.unregister(client)
        client.close()
        del self._requests[client]


def render(sampler: NodeSampler, health: Health, jobs: Iterable[_JobSeries], backlog: int) -> str:
    """The whole exposition: node and job energy counters, then the agent's health."""
    jobs = list(jobs)
    parts: list[str] = []
    parts += family(
        "jobcarbon_node_energy_joules_total",
        "counter",
        "Energy the node used since the agent started, per component (cpu is estimated without RAPL).",
        (f'{{component="{c}"}} {sampler.energy_j[c]:.3f}' for c in COMPONENTS),
    )
    parts += family(
        "jobcarbon_job_energy_joules_total",
        "counter",
        "Energy attributed to a job on this node so far, per component, as its record will sum it.",
        (f"{s.energy[c]} {s.tracker.energy_j[c]:.3f}" for s in jobs for c in COMPONENTS),
    )
    parts += family(
        "jobcarbon_job_gpu_energy_joules_total",
        "counter",
        "Energy attributed to a job per GPU (or MIG slice) so far.",
        (f"{_gpu_labels(s, uuid)} {joules:.3f}" for s in jobs for uuid, joules in s.tracker.gpu_j.items()),
    )
    parts += family(
        "jobcarbon_job_cpu_seconds_total",
        "counter",
        "CPU time a job used on this node (its cgroup).",
        (f"{s.plain} {s.tracker.cpu_s:.3f}" for s in jobs),
    )
    parts += family(
        "jobcarbon_job_allocated_cpus",
        "gauge",
        "CPUs allocated to a job on this node (for efficiency: CPU seconds per second per CPU).",
        (f"{s.plain} {_cpus(s.tracker)}" for s in jobs),
    )
    parts += _health(sampler, health, backlog)
    return "".join(parts)


def _cpus(tracker: JobTracker) -> int:
    usage = tracker.usage
    return len(usage.cpus) if usage and usage.cpus else (tracker.info.cpus_per_node or 0)


def _gpu_labels(series: _JobSeries, uuid: str) -> str:
    labels = series.gpus.get(uuid)
    if labels is None:
        labels = series.gpus[uuid] = f'{series.plain[:-1]},gpu="{escape(uuid)}"}}'
    return labels


def _health(sampler: NodeSampler, health: Health, backlog: int) -> Iterator[str]:
    gauges = (
        ("start_time_seconds", "When this agent started (Unix time).", health.started_s),
        ("last_tick_timestamp_seconds", "When the agent last sampled (Unix time).", health.last_tick_s),
        ("last_tick_duration_seconds", "How long the last tick took.", health.last_tick_duration_s),
        ("jobs", "Jobs the agent samples.", len(sampler.jobs)),
        ("outbox_records", "Finished records in this node's outbox, not yet delivered.", backlog),
    )
    for name, help_text, value in gauges:
        yield from family(f"jobcarbon_agent_{name}", "gauge", help_text, (f" {value}",))
    yield from family("jobcarbon_agent_ticks_total", "counter", "Ticks sampled.", (f" {health.ticks}",))
    spent = f" {health.tick_seconds:.6f}"
    yield from family("jobcarbon_agent_tick_seconds_total", "counter", "Time spent in ticks.", (spent,))
    yield from family(
        "jobcarbon_agent_sensor_ok",
        "gauge",
        "1 when the sensor's last reading succeeded (rapl 0: no readable zone, CPU energy estimated).",
        (f'{{sensor="{name}"}} {int(ok)}' for name, ok in sorted(sampler.sensors_ok.items())),
    )
    yield from family(
        "jobcarbon_agent_deliveries_total",
        "counter",
        "Deliveries to the database started by the agent; failed: a record it found was left behind.",
        (f'{{result="{result}"}} {count}' for result, count in health.deliveries.items()),
    )
    if health.last_delivery_s is not None:
        yield from family(
            "jobcarbon_agent_last_delivery_timestamp_seconds",
            "gauge",
            "When a delivery last stored every record it found (Unix time).",
            (f" {health.last_delivery_s}",),
        )
