"""The node sampler's fallbacks: every estimate it falls back to is noted in the record and logged once
per job, however many ticks it lasts."""

from __future__ import annotations

import errno
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from slurm_plugin import config as config_module
from slurm_plugin import record
from slurm_plugin.node import jobenv, journal
from slurm_plugin.node.sampler import NodeSampler
from slurm_plugin.sensors import rapl
from tests.simnode import NODE, SimNode

TICKS = 6


def _run(node: SimNode, config: config_module.Config, job_id: int = 71, **env: str) -> tuple[dict, list[str]]:
    """One job sampled for TICKS ticks; its record and the sampler's log lines."""
    log: list[str] = []
    sampler = NodeSampler(config, lambda level, text: log.append(f"{level}: {text}"))
    info = jobenv.from_env(node.env(job_id, **env), "sim", NODE)
    path = node.root / f"{job_id}.jsonl"
    start = time.time()
    sampler.add(info, start, path, None)
    sampler.settle()
    for step in range(TICKS):
        node.set_rapl(1000.0 + step, 100.0 + step / 10)
        sampler.tick(start + 0.1 * (step + 1))
    end = start + 0.1 * TICKS
    sampler.remove(info.key, ended=end)
    return record.build(journal.read(path), end, []), log


@pytest.fixture
def node(tmp_path: Path) -> SimNode:
    sim = SimNode(tmp_path)
    sim.set_rapl(1000.0, 100.0)
    sim.job_cgroup(71, cpus="0-1", mem=2**30)
    return sim


def _lines(log: list[str], text: str) -> list[str]:
    return [line for line in log if text in line]


def test_measured_counters_leave_no_note(node: SimNode) -> None:
    document, log = _run(node, config_module.load(node.config))
    assert document["notes"] == []
    assert document["energy"]["cpu"]["method"] == "measured"
    assert log == []


def test_a_mistyped_sysfs_notes_the_tdp_estimate_once(node: SimNode) -> None:
    config = config_module.load(node.config)
    config = replace(config, paths=replace(config.paths, sysfs=node.root / "sys-typo"))
    document, log = _run(node, config)
    assert document["status"] == "complete"  # sampled throughout; the estimate is flagged, not a gap
    assert document["energy"]["cpu"]["method"] == "estimated"
    cpu_notes = [note for note in document["notes"] if note.startswith("CPU energy estimated")]
    assert len(cpu_notes) == 1
    assert "sys-typo/class/powercap" in cpu_notes[0]
    assert "W per CPU" in cpu_notes[0]  # where the TDP came from
    assert any(note.startswith("DRAM energy estimated") for note in document["notes"])
    assert len(_lines(log, "job 71.0: CPU energy estimated")) == 1
    assert len(_lines(log, "job 71.0: DRAM energy estimated")) == 1


def test_unreadable_rapl_counters_note_the_estimate_once_per_job(
    node: SimNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_module.load(node.config)

    def denied(path: Any) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(rapl, "read_int", denied)
    document, log = _run(node, config)
    assert document["energy"]["cpu"]["method"] == "estimated"
    assert document["energy"]["dram"]["method"] == "estimated"
    cpu_notes = [note for note in document["notes"] if note.startswith("CPU energy estimated while RAPL")]
    assert len(cpu_notes) == 1
    assert "energy_uj is root-only" in cpu_notes[0]
    assert len(_lines(log, "CPU energy estimated while RAPL")) == 1  # not one per tick
    assert len(_lines(log, "DRAM energy estimated while RAPL")) == 1
    assert document["coverage"]["fraction"] > 0.8


def test_a_missing_job_cgroup_and_nvml_are_noted_and_logged_once(tmp_path: Path, node: SimNode) -> None:
    config = config_module.load(node.config)
    config = replace(config, nvml=replace(config.nvml, library=tmp_path / "no-libnvidia-ml.so.1"))
    document, log = _run(node, config, job_id=72, SLURM_JOB_GPUS="0")
    assert any(note.startswith("job cgroup not found") for note in document["notes"])
    assert any("NVML is unavailable" in note for note in document["notes"])
    assert len(_lines(log, "job 72.0: job cgroup not found")) == 1
    assert len(_lines(log, "job 72.0: job has GPUs but NVML is unavailable")) == 1
    assert len(_lines(log, "trying again in")) == 1  # the node's own line: NVML is retried later
    assert len(log) == 3
