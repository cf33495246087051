"""The agent's metrics exposition: node_exporter's textfile and its own GET /metrics (node/metrics.py),
rendered when due; a failure to publish is logged once and never stops sampling."""

from __future__ import annotations

import contextlib
import selectors
import time
from typing import Any

from slurm_plugin.config import Config
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.eventlog import EventLog
from slurm_plugin.node.metrics import Exposition, Health, Listener
from slurm_plugin.node.sampler import NodeSampler


class MetricsExposition:
    """The agent's part that publishes its metrics; `Agent` holds the selector and the sampler."""

    config: Config
    log: EventLog
    sampler: NodeSampler
    selector: selectors.BaseSelector

    def _init_metrics(self) -> None:
        self.health = Health()
        metrics = self.config.metrics
        self.metrics = (
            Exposition(metrics.textfile_dir, metrics.textfile_interval_s, metrics.ended_job_keep_s)
            if metrics.textfile_dir is not None or metrics.agent_listen is not None
            else None
        )
        self.listener: Listener | None = None
        self._metrics_problem: str | None = None

    def _listen_http(self) -> None:
        """The agent's own GET /metrics, when configured; failing to bind is logged, never fatal."""
        listen = self.config.metrics.agent_listen
        if listen is None:
            return
        try:
            self.listener = Listener(listen)
        except (OSError, JobcarbonError) as exc:
            self.log("warning", f"metrics: cannot listen on {listen}: {exc}")
            return
        self.listener.register(self.selector)

    def _scraped(self, ready: Any) -> None:
        """A scraper's connection (metrics.agent_listen) can be read."""
        if self.listener is not None and self.metrics is not None:
            self.listener.ready(self.selector, ready, self.metrics.text)

    def _publish(self) -> None:
        """Render the metrics when due (and write the textfile); a failure is logged once and never
        stops sampling."""
        if self.metrics is None:
            return
        try:
            self.metrics.update(self.sampler, self.health, self.config.paths.outbox, time.time())
        except OSError as exc:
            if str(exc) != self._metrics_problem:
                self.log("warning", f"metrics textfile not written: {exc}")
            self._metrics_problem = str(exc)
        else:
            self._metrics_problem = None

    def _holding(self) -> bool:
        """Stay a little after the last job, so that its final totals are scraped."""
        return self.metrics is not None and self.metrics.holding(time.time())

    def _close_metrics(self) -> None:
        if self.listener is not None:
            self.listener.close(self.selector)
        if self.metrics is not None:
            with contextlib.suppress(OSError):
                self.metrics.remove()
