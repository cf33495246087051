"""The Grafana dashboards in config/grafana/: the committed JSON is what build.py generates, the SDK's
models read it back unchanged, and every panel queries metrics jobcarbon exports."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("grafana_foundation_sdk")
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from slurm_plugin.node import metrics
from slurm_plugin.node.jobenv import JobInfo
from slurm_plugin.node.metrics import Exposition, Health
from slurm_plugin.node.tracker import COMPONENTS, JobTracker

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "config" / "grafana"


def load_build():
    spec = importlib.util.spec_from_file_location("jobcarbon_grafana_build", GRAFANA / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build()


@pytest.mark.parametrize("name", sorted(build.DASHBOARDS))
def test_committed_json_is_what_the_script_generates(name: str) -> None:
    assert (GRAFANA / name).read_text() == build.render(build.DASHBOARDS[name]), "run config/grafana/build.py"


def test_no_stray_dashboard_files() -> None:
    assert {p.name for p in GRAFANA.glob("*.json")} == set(build.DASHBOARDS)


@pytest.mark.parametrize("name", sorted(build.DASHBOARDS))
def test_the_sdk_models_read_each_dashboard_back_unchanged(name: str) -> None:
    register_default_plugins()
    document = json.loads((GRAFANA / name).read_text())
    model = Dashboard.from_json(document)
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == document
    assert model.uid == name.removesuffix(".json")


def exported_families() -> set[str]:
    """Every metric family the agent's textfile (rendered for a job with a GPU and a delivery) and the
    cluster exporter (read from its source: account and user) write."""
    info = JobInfo("c", 1, 0, "n1", "alice", 1000, 1000, "physics", "batch")
    tracker = JobTracker(info, 0.0, None, 0.0)  # type: ignore[arg-type]
    tracker.gpu_j = {"GPU-1": 1.0}
    sampler = SimpleNamespace(jobs={"1.0": tracker}, energy_j=dict.fromkeys(COMPONENTS, 0.0), sensors_ok={})
    health = Health()
    health.delivered(True, 1.0)
    series = Exposition(Path("/nonexistent"), 0, 0)._add(tracker)
    text = metrics.render(sampler, health, [series], 0)  # type: ignore[arg-type]
    source = (REPO / "slurm_plugin" / "query" / "cluster_metrics.py").read_text()
    text += source.replace("{by}", "account") + source.replace("{by}", "user")
    return set(re.findall(r"# TYPE (jobcarbon_[a-z0-9_]+)", text)) | set(
        re.findall(r'"(jobcarbon_[a-z0-9_]+)"', text)
    )


@pytest.mark.parametrize("name", sorted(build.DASHBOARDS))
def test_every_panel_queries_exported_metrics(name: str) -> None:
    exported = exported_families()
    document = json.loads((GRAFANA / name).read_text())
    queries = build.panel_queries(document)
    titled = {panel["title"] for panel in document["panels"] if panel["type"] != "row"}
    assert {title for title, _ in queries} == titled, "a panel without a query"
    for title, expr in queries:
        for metric in re.findall(r"jobcarbon_[a-z0-9_]+", expr):
            assert metric in exported, f"{name} {title!r}: {metric} is not exported"
