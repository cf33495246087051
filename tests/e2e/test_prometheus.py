"""jobcarbon's metrics in a real Prometheus: Debian's prometheus scrapes node_exporter's textfile
collector (the agent's jobcarbon.prom) and `jobcarbon metrics serve` while a real Slurm job runs; the
checks go through Prometheus' HTTP API, in PromQL, as a dashboard or an alert would ask."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.storage import Store
from testbed.hardware import SimulatedHardware
from testbed.host import REPO_ROOT, poll
from testbed.slurm import Cluster
from tests.e2e.conftest import REQUIRE_ENV
from tests.e2e.test_jobcarbon import BURN, _record
from tests.test_grafana import GRAFANA, build

pytestmark = pytest.mark.slurm

BINARIES = {"prometheus": "prometheus", "node_exporter": "prometheus-node-exporter"}
JOBCARBON = (sys.executable, "-m", "slurm_plugin")
RULES = REPO_ROOT / "config" / "prometheus" / "jobcarbon-rules.yml"
METRICS_CONFIG = """metrics:
  textfile_dir: {directory}
  textfile_interval_s: 0
  ended_job_keep_s: 10
"""
PROMETHEUS_CONFIG = """global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{node}"]}}]
  - job_name: jobcarbon
    static_configs: [{{targets: ["127.0.0.1:{cluster}"]}}]
"""


@dataclass
class Stack:
    url: str  # Prometheus' HTTP API
    processes: list[subprocess.Popen]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
        return self._get("query", params)

    def query_range(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        return self._get("query_range", {"query": promql, "start": start, "end": end, "step": "1s"})

    def _get(self, kind: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/{kind}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - http on loopback
            document = json.loads(reply.read())
        assert document["status"] == "success", document
        return document["data"]["result"]


def _binaries() -> dict[str, str]:
    found = {name: shutil.which(binary, path="/usr/bin:/usr/sbin:/bin") for name, binary in BINARIES.items()}
    missing = [BINARIES[name] for name, path in found.items() if path is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (.ci/run installs Debian's packages)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return {name: str(path) for name, path in found.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool | None:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - http on loopback
            return True
    except OSError:
        return None


def _store_series(url: str) -> None:
    """Hourly slots around now for a zone the test bed does not account in (its jobs stay on DE's
    yearly average, as tests/e2e/test_jobcarbon.py expects), so the series' freshness has data."""
    hour = int(time.time() // 3600) * 3600
    slots = [
        IntensityPoint(
            "FR",
            dt.datetime.fromtimestamp(start, dt.UTC),
            dt.datetime.fromtimestamp(start + 3600, dt.UTC),
            40.0,
            "e2e",
            "lifecycle",
        )
        for start in range(hour - 3 * 3600, hour + 3600, 3600)
    ]
    store = Store.open(url, 10.0, create=False)
    try:
        store.upsert_intensity(slots)
    finally:
        store.close()


@pytest.fixture(scope="module")
def stack(
    slurm_cluster: Cluster, simulated_hardware: SimulatedHardware, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    binaries = _binaries()
    scratch = tmp_path_factory.mktemp("prometheus")
    _store_series(simulated_hardware.database_url)
    textfiles = slurm_cluster.scratch / "textfile"
    textfiles.mkdir(exist_ok=True)
    # Only this module's jobs write metrics: an agent staying for ended jobs' totals would change the
    # timing of other modules' tests (a spare agent waiting for the lock).
    jobcarbon_config = slurm_cluster.jobcarbon_config
    original = jobcarbon_config.read_text()
    jobcarbon_config.write_text(original + METRICS_CONFIG.format(directory=json.dumps(str(textfiles))))
    node, cluster, api = _free_port(), _free_port(), _free_port()
    listen = f"127.0.0.1:{cluster}"
    config = scratch / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(rules=json.dumps(str(RULES)), node=node, cluster=cluster))
    commands = [
        [
            binaries["node_exporter"],
            f"--web.listen-address=127.0.0.1:{node}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={textfiles}",
        ],
        [*JOBCARBON, "--config", str(slurm_cluster.jobcarbon_config), "metrics", "serve", "--listen", listen],
        [
            binaries["prometheus"],
            f"--config.file={config}",
            f"--storage.tsdb.path={scratch / 'data'}",
            f"--web.listen-address=127.0.0.1:{api}",
        ],
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    processes = []
    try:
        for command in commands:
            log = (scratch / f"{Path(command[0]).name}.log").open("wb")
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
        poll(lambda: _answers(f"http://127.0.0.1:{api}/-/ready"), 30, "Prometheus to be ready")
        stack = Stack(f"http://127.0.0.1:{api}", processes)
        poll(lambda: len(stack.query("up == 1")) == 2 or None, 30, "both targets up")
        yield stack
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        jobcarbon_config.write_text(original)


@dataclass
class Run:
    job_id: int
    running_at: float  # a moment the job's series were being scraped
    started: float
    record: dict[str, Any]


@pytest.fixture(scope="module")
def finished_job(stack: Stack, slurm_cluster: Cluster, slurm_user: str) -> Run:
    started = time.time()
    job_id = slurm_cluster.submit(BURN.format(s=15), user=slurm_user, account="physics", gres="gpu:1")
    selector = f'jobcarbon_job_energy_joules_total{{jobid="{job_id}",component="cpu"}}'
    poll(
        lambda: [s for s in stack.query(selector) if float(s["value"][1]) > 0] or None, 60, "the job's series"
    )
    time.sleep(3)  # a few scrapes of the running job, for rates
    running_at = time.time()
    assert slurm_cluster.wait_finished(job_id, timeout_s=120).state == "COMPLETED"
    return Run(job_id, running_at, started, _record(slurm_cluster, job_id))


def test_a_finished_jobs_energy_in_prometheus_matches_its_record(stack: Stack, finished_job: Run) -> None:
    """The counter's last value per component is the record's energy (±1 %)."""
    energy = finished_job.record["energy"]
    query = f'max_over_time(jobcarbon_job_energy_joules_total{{jobid="{finished_job.job_id}"}}[10m])'

    def last_values() -> dict[str, float] | None:
        found = {s["metric"]["component"]: float(s["value"][1]) for s in stack.query(query)}
        matches = all(found.get(c) == pytest.approx(energy[c]["joules"], rel=0.01) for c in ("cpu", "gpu"))
        return found if matches else None

    found = poll(last_values, 30, "the job's final totals in Prometheus")
    for component in ("cpu", "dram", "gpu"):
        assert found[component] == pytest.approx(energy[component]["joules"], rel=0.01, abs=1e-3)
    assert energy["gpu"]["joules"] > 0
    total = f'sum(max_over_time(jobcarbon_job_energy_joules_total{{jobid="{finished_job.job_id}"}}[10m]))'
    assert float(stack.query(total)[0]["value"][1]) == pytest.approx(energy["total_joules"], rel=0.01)


def test_the_series_of_an_ended_job_stop(stack: Stack, finished_job: Run) -> None:
    selector = f'{{__name__=~"jobcarbon_job_.*",jobid="{finished_job.job_id}"}}'
    assert stack.query(selector, at=finished_job.running_at), "the job had series while it ran"
    poll(lambda: stack.query(selector) == [] or None, 60, "the ended job's series to stop")
    # Once the agent has exited, its file is gone and so are all of its series.
    poll(
        lambda: stack.query("jobcarbon_agent_start_time_seconds") == [] or None,
        60,
        "the agent's series to stop",
    )


@pytest.mark.parametrize("name", sorted(build.DASHBOARDS))
def test_every_dashboard_query_returns_data(stack: Stack, finished_job: Run, name: str) -> None:
    """Each panel's query, with the job as $jobid, returns data over the job's run and the minute after
    (the cluster exporter's month figures need the stored record; the job's rates need the run)."""
    poll(lambda: stack.query("jobcarbon_account_month_energy_joules > 0") or None, 60, "the stored record")
    document = json.loads((GRAFANA / name).read_text())
    empty = []
    for title, expr in build.panel_queries(document):
        promql = expr.replace("$__rate_interval", "5s").replace("$jobid", str(finished_job.job_id))
        if not any(
            series["values"] for series in stack.query_range(promql, finished_job.started, time.time())
        ):
            empty.append(f"{title}: {promql}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_the_recording_rules_give_month_to_date_per_account(stack: Stack, finished_job: Run) -> None:
    rows = poll(
        lambda: stack.query("account:jobcarbon_month_energy_kwh:sum") or None, 30, "the recording rule"
    )
    physics = {row["metric"]["account"]: float(row["value"][1]) for row in rows}["physics"]
    assert physics >= finished_job.record["energy"]["total_joules"] / 3.6e6 * 0.99
