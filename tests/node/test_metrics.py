"""The agent's node_exporter textfile: counters that end at the record's energy, series that end with
the job, a file that is valid exposition text and goes when the agent does."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from slurm_plugin.node.metrics import FILENAME
from slurm_plugin.promtext import escape
from tests.simnode import SimNode, wait_for

parser = pytest.importorskip("prometheus_client.parser")


def _samples(path: Path) -> dict[tuple[str, frozenset], float]:
    """Every sample of the file, parsed by prometheus-client's own parser (which rejects bad text)."""
    if not path.exists():
        return {}
    found = {}
    for family in parser.text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def _job(samples: dict, job_id: int, name: str = "jobcarbon_job_energy_joules_total") -> dict[str, float]:
    return {
        dict(labels)["component"]: value
        for (metric, labels), value in samples.items()
        if metric == name and dict(labels)["jobid"] == str(job_id)
    }


def test_job_counters_end_at_the_record_and_series_go_with_the_job(tmp_path: Path) -> None:
    from dataclasses import replace

    from testbed.nvml_standin import CONFIG_NAME, FakeGpu, build, write_config

    library = build(tmp_path / "nvml")
    gpu = FakeGpu("GPU-00000000-0000-4000-8000-0000000000aa", minor=0, pci_bus_id="00000000:17:00.0")
    write_config(library.parent / CONFIG_NAME, [replace(gpu, power_mw=250_000)])
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    settings = (
        f"nvml:\n  library: {library}\n  counter_interval_s: 0.3\n"
        f"metrics:\n  textfile_dir: {textfiles}\n  textfile_interval_s: 0\n  ended_job_keep_s: 1.5\n"
    )
    node = SimNode(tmp_path / "node", interval_s=0.1, extra_config=settings)
    path = textfiles / FILENAME
    try:
        node.set_rapl(1000.0, 100.0)
        node.job_cgroup(70, cpus="0", mem=2**30)
        node.hook("prolog", 70, SLURM_JOB_GPUS="0")
        running = wait_for(lambda: _job(_samples(path), 70).get("gpu"), what="the job's GPU energy")
        for step in range(1, 6):
            node.set_rapl(1000.0 + 40 * step, 100.0 + 4 * step)
            node.job_cgroup(70, cpus="0", cpu_s=0.05 * step, mem=2**30)
            wait_for(lambda s=step: node.intervals(70) >= 2 * s + 2, what="more intervals")
        assert _job(_samples(path), 70)["gpu"] >= running
        node.hook("epilog", 70, SLURM_JOB_GPUS="0")
        record = node.record(70)
        assert record is not None
        energy = {c: record["energy"][c]["joules"] for c in ("cpu", "dram", "gpu")}

        def final_written() -> dict | None:
            samples = _samples(path)
            return samples if _job(samples, 70) == pytest.approx(energy, abs=2e-3) else None

        final = wait_for(final_written, what="the record's energy as the job's final totals")
        shown = _job(final, 70)
        for component in ("cpu", "dram", "gpu"):
            assert shown[component] == pytest.approx(record["energy"][component]["joules"], abs=2e-3)
        labels = next(dict(k[1]) for k in final if k[0] == "jobcarbon_job_energy_joules_total")
        assert labels["account"] == "physics"
        assert labels["user"] == "user1000"
        assert labels["partition"] == "batch"
        gpu_series = {dict(k[1])["gpu"]: v for k, v in final.items() if k[0].startswith("jobcarbon_job_gpu")}
        assert gpu_series == {gpu.uuid: pytest.approx(shown["gpu"], abs=2e-3)}
        node_energy = {
            dict(k[1])["component"]: v for k, v in final.items() if k[0].startswith("jobcarbon_node")
        }
        assert node_energy["cpu"] == pytest.approx(200.0, abs=40.1)  # 5 steps of 40 J (+ the first)
        assert node_energy["gpu"] >= shown["gpu"] - 1e-3
        assert final["jobcarbon_agent_sensor_ok", frozenset({("sensor", "rapl")})] == 1
        assert final["jobcarbon_agent_ticks_total", frozenset()] > 5
        wait_for(lambda: not path.exists(), timeout_s=10, what="the agent to remove its textfile on exit")
    finally:
        node.stop_agent()


def test_a_job_that_ended_loses_its_series_while_others_run(tmp_path: Path) -> None:
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    node = SimNode(
        tmp_path / "node",
        interval_s=0.1,
        extra_config=f"metrics:\n  textfile_dir: {textfiles}\n  textfile_interval_s: 0\n"
        "  ended_job_keep_s: 0.3\n",
    )
    path = textfiles / FILENAME
    try:
        node.hook("prolog", 80)
        node.hook("prolog", 81)
        wait_for(lambda: _job(_samples(path), 81), what="both jobs' series")
        node.hook("epilog", 80)
        assert node.record(80) is not None
        wait_for(lambda: not _job(_samples(path), 80), what="the ended job's series to go")
        assert _job(_samples(path), 81)
        node.hook("epilog", 81)
    finally:
        node.stop_agent()


def test_label_values_are_escaped() -> None:
    assert escape('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - http on loopback
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, ""
    except OSError:
        return 0, ""


def test_the_agent_answers_get_metrics_itself_and_an_idle_client_holds_up_nothing(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = (
        f"metrics:\n  agent_listen: 127.0.0.1:{port}\n  textfile_interval_s: 0\n  ended_job_keep_s: 0\n"
    )
    node = SimNode(tmp_path / "node", interval_s=0.1, extra_config=settings)
    url = f"http://127.0.0.1:{port}"
    try:
        node.hook("prolog", 90)
        _, text = wait_for(lambda: (r := _get(f"{url}/metrics"))[0] == 200 and r, what="GET /metrics")
        families = {f.name for f in parser.text_string_to_metric_families(text)}
        assert {"jobcarbon_job_energy_joules", "jobcarbon_agent_ticks"} <= families
        assert _get(f"{url}/")[0] == 404
        with socket.create_connection(("127.0.0.1", port)):  # connects and never sends a request
            node.hook("epilog", 90)
            assert node.record(90) is not None
        wait_for(lambda: _get(f"{url}/metrics")[0] == 0, what="the agent to stop listening on exit")
    finally:
        node.stop_agent()
