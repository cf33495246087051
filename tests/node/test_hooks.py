"""The prolog and epilog scripts: always exit 0, fast, one log line per failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testbed import venv
from tests.simnode import SimNode, wait_for


@pytest.fixture
def node(tmp_path: Path):
    sim = SimNode(tmp_path)
    yield sim
    sim.stop_agent()


def test_prolog_then_epilog_writes_a_complete_record(node: SimNode) -> None:
    node.job_cgroup(7, cpus="0", cpu_s=0.0, mem=2**30)
    assert node.hook("prolog", 7).returncode == 0
    wait_for(lambda: node.intervals(7) >= 2, what="two intervals")
    assert node.hook("epilog", 7).returncode == 0
    record = node.record(7)
    assert record is not None
    assert record["status"] == "complete"
    assert record["account"] == "physics"
    assert record["allocated_cpus"] == {"count": 1, "list": "0"}


@pytest.mark.parametrize(
    "config_text",
    ["sampler: [unclosed\n", "sampler:\n  interval_s: -3\n", "nonsense_key: 1\n"],
    ids=["invalid-yaml", "bad-value", "unknown-key"],
)
def test_broken_config_exits_zero_and_logs_one_line(node: SimNode, config_text: str) -> None:
    node.config.write_text(f"paths:\n  log_file: {node.log}\n" + config_text)
    for hook in ("prolog", "epilog"):
        assert node.hook(hook, 8).returncode == 0
    assert not node.spool.exists()
    # The log file is named in the broken config, so the error goes to syslog; nothing crashes.


def test_hooks_run_from_a_venv_install(node: SimNode, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The documented install is a venv (docs/install.md): its site-packages and .pth files (editable
    installs) must be found, which Python 3.12 no longer does under -S."""
    python = venv.make(tmp_path_factory.mktemp("venv"))
    venv_env = {"JOBCARBON_PYTHON": str(python), "JOBCARBON_PYTHONPATH": ""}
    node.job_cgroup(12, cpus="0")
    assert node.hook("prolog", 12, **venv_env).returncode == 0
    wait_for(lambda: node.intervals(12) >= 1, what="a first interval")
    assert node.hook("epilog", 12, **venv_env).returncode == 0
    record = node.record(12)
    assert record is not None
    assert record["status"] == "complete"


def test_missing_python_or_package_still_exits_zero(node: SimNode) -> None:
    assert node.hook("prolog", 9, JOBCARBON_PYTHON="/nonexistent/python3").returncode == 0
    assert (
        node.hook("epilog", 9, JOBCARBON_PYTHONPATH="/nonexistent", JOBCARBON_PYTHON="/bin/false").returncode
        == 0
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLURM_JOB_ID", "1;id"),
        ("SLURM_JOB_ID", ""),
        ("SLURM_JOB_UID", "-1"),
        ("SLURM_JOB_ACCOUNT", "a/../../b"),
    ],
)
def test_hostile_environment_is_refused_and_logged(node: SimNode, variable: str, value: str) -> None:
    assert node.hook("prolog", 10, **{variable: value}).returncode == 0
    assert not (node.spool / "jobs").exists() or not any((node.spool / "jobs").iterdir())
    log = node.log.read_text()
    assert "bad Slurm environment" in log
    assert variable in log


def test_unwritable_spool_exits_zero_with_a_clear_line(node: SimNode) -> None:
    node.spool.parent.mkdir(exist_ok=True)
    node.spool.write_text("a file where the spool directory should be")
    assert node.hook("prolog", 11).returncode == 0
    assert "jobcarbon prolog failed" in node.log.read_text()


def test_symlinked_spool_is_refused(node: SimNode, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    node.spool.symlink_to(elsewhere)
    assert node.hook("prolog", 12).returncode == 0
    assert not any(elsewhere.iterdir())
    assert "not a directory" in node.log.read_text()


def test_epilog_without_prolog_is_a_no_op(node: SimNode) -> None:
    assert node.hook("epilog", 13).returncode == 0
    assert node.record(13) is None


def test_killed_agent_yields_a_partial_record(node: SimNode) -> None:
    node.job_cgroup(14)
    assert node.hook("prolog", 14).returncode == 0
    wait_for(lambda: node.intervals(14) >= 2, what="samples")
    pid = node.agent_pid()
    assert pid is not None
    os.kill(pid, 9)
    wait_for(lambda: node.agent_pid() is None, what="agent gone")
    assert node.hook("epilog", 14).returncode == 0
    record = node.record(14)
    assert record is not None
    assert record["status"] == "partial"
    assert any("sampler not running at job end" in r for r in record["partial_reasons"])
    assert record["coverage"]["samples"] >= 2
