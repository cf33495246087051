"""The docs stay true: the worked example's numbers, every config key and every command documented."""

from __future__ import annotations

import argparse
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


def test_constrain_cores_no_example_in_attribution_doc_matches_the_code() -> None:
    node = NodeInterval(10, 500, Method.MEASURED, None, 1, 64, 64 * GIB, idle_power_w=20)
    job = attribute(node, [JobInterval("A", cpu_s=1, cpus=1, memory_bytes=0)], {})["A"]
    assert job.cpu == Share(pytest.approx(303.125), Method.APPORTIONED)
    assert f"**{job.cpu.joules:g} J**" in (REPO / "docs" / "attribution.md").read_text()


def test_dram_held_and_used_example_in_attribution_doc_matches_the_code() -> None:
    node = NodeInterval(10, 1000, Method.MEASURED, 60, 12, 4, 64 * GIB, idle_power_w=40)
    jobs = [
        JobInterval("H", 10, 1, memory_bytes=16 * GIB, memory_limit_bytes=32 * GIB),
        JobInterval("T", 0, 1, memory_bytes=GIB // 2, memory_limit_bytes=16 * GIB),
    ]
    result = attribute(node, jobs, {})
    assert result["H"].dram.joules == pytest.approx(22.5)
    assert f"**{result['T'].dram.joules!r} J**" in (REPO / "docs" / "attribution.md").read_text()


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


def _commands(
    parser: argparse.ArgumentParser, prefix: str = "jobcarbon"
) -> dict[str, argparse.ArgumentParser]:
    """Every command line that runs something (`jobcarbon db upgrade`), with its parser."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _commands(sub, f"{prefix} {name}") or {f"{prefix} {name}": sub}
    return found


ONCE_FOR_ALL = ("--config", "--json", "--csv")  # described once, under the README's command table


def test_every_command_and_option_is_documented() -> None:
    """Each command has its README row naming its options; long names are all in the docs somewhere."""
    readme = (REPO / "README.md").read_text()
    docs = readme + "".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    rows = [line for line in readme.splitlines() if line.startswith("| `jobcarbon ")]
    for command, parser in _commands(build_parser()).items():
        row = next((r for r in rows if re.search(rf"`{re.escape(command)}[ `]", r)), None)
        assert row is not None, f"{command} has no row in README.md's command table"
        for action in parser._actions:
            flags = action.option_strings
            if not flags or "--help" in flags or action.help == argparse.SUPPRESS:
                continue
            if set(flags) & set(ONCE_FOR_ALL):
                assert all(f"`{flag}" in readme for flag in flags), f"{flags} not described in README.md"
                continue
            assert any(re.search(rf"{re.escape(f)}\b", row) for f in flags), (
                f"{command} {flags[-1]} not in its row"
            )
            for flag in (f for f in flags if f.startswith("--")):
                assert re.search(rf"{re.escape(flag)}\b", docs), f"{command} {flag} is not documented"
