"""The docs stay true: the worked example's numbers, every config key and every command documented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from slurm_plugin import config
from slurm_plugin.cli.main import build_parser
from slurm_plugin.methods import Method
from slurm_plugin.node.attribution import GpuClaim, JobInterval, NodeInterval, Share, attribute

REPO = Path(__file__).resolve().parent.parent
GIB = 1024**3


def test_worked_example_in_attribution_doc_matches_the_code() -> None:
    node = NodeInterval(
        duration_s=10,
        cpu_j=1000,
        cpu_method=Method.MEASURED,
        dram_j=60,
        cpu_busy_s=12,
        ncpus=4,
        mem_total_bytes=64 * GIB,
        idle_power_w=40,
    )
    jobs = [
        JobInterval("A", cpu_s=10, cpus=1, memory_bytes=8 * GIB, gpus=[GpuClaim("GPU-a", "GPU-a")]),
        JobInterval("B", cpu_s=1, cpus=2, memory_bytes=2 * GIB, gpus=[GpuClaim("MIG-b", "GPU-b", 3 / 7)]),
    ]
    gpus = {"GPU-a": Share(2500, Method.MEASURED), "GPU-b": Share(1400, Method.MEASURED)}
    result = attribute(node, jobs, gpus)
    a, b = result["A"], result["B"]
    assert (a.cpu.joules, b.cpu.joules) == pytest.approx((600, 250))
    assert (a.dram.joules, b.dram.joules) == pytest.approx((7.5, 1.875))
    assert a.gpus["GPU-a"] == Share(2500, Method.MEASURED)
    assert b.gpus["MIG-b"].joules == pytest.approx(600)
    assert b.gpus["MIG-b"].method == Method.ESTIMATED
    total_a = a.cpu.joules + a.dram.joules + a.gpus["GPU-a"].joules
    total_b = b.cpu.joules + b.dram.joules + b.gpus["MIG-b"].joules
    text = (REPO / "docs" / "attribution.md").read_text()
    assert f"A {total_a:g} J, B {total_b:g} J" in text


def _keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for field in dataclasses.fields(cls):
        if field.name == "source":
            continue
        if dataclasses.is_dataclass(field.type) or isinstance(field.default_factory, type):
            keys += _keys(field.default_factory, f"{prefix}{field.name}.")  # type: ignore[arg-type]
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def test_every_config_key_is_in_the_commented_example() -> None:
    example = (REPO / "config" / "jobcarbon.yaml").read_text()
    for key in _keys(config.Config):
        leaf = key.rsplit(".", 1)[-1]
        assert re.search(rf"^\s*{leaf}:", example, re.MULTILINE), f"{key} missing from config/jobcarbon.yaml"


def test_the_commented_example_is_the_defaults() -> None:
    loaded = config.load(REPO / "config" / "jobcarbon.yaml")
    assert dataclasses.replace(loaded, source=None) == config.Config()


def test_every_command_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        assert f"`jobcarbon {name}" in readme, f"jobcarbon {name} is not documented in README.md"
