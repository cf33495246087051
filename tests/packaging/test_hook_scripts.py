"""The hook scripts when Python cannot even start the hook: one line to syslog and to the hooks' log
file (never through a symlink), exit 0, fast."""

from __future__ import annotations

import time
import venv
from pathlib import Path

import pytest

from tests.simnode import SimNode


@pytest.fixture
def node(tmp_path: Path):
    sim = SimNode(tmp_path)
    yield sim
    sim.stop_agent()


def run_hook(node: SimNode, hook: str, job_id: int, **extra: str) -> float:
    started = time.monotonic()
    result = node.hook(hook, job_id, JOBCARBON_HOOK_LOG=str(node.root / "logs" / "hooks.log"), **extra)
    assert result.returncode == 0
    assert result.stdout == result.stderr == b""
    return time.monotonic() - started


@pytest.mark.parametrize("hook", ["prolog", "epilog"])
def test_missing_interpreter_is_logged_and_exits_zero_fast(node: SimNode, hook: str) -> None:
    (node.root / "logs").mkdir()
    assert run_hook(node, hook, 21, JOBCARBON_PYTHON=str(node.root / "missing" / "python3")) < 5
    lines = (node.root / "logs" / "hooks.log").read_text().splitlines()
    assert len(lines) == 1
    assert f"{hook}[" in lines[0]
    assert f"jobcarbon {hook} skipped for job 21: {node.root}/missing/python3 not found" in lines[0]
    assert (node.root / "logs" / "hooks.log").stat().st_mode & 0o777 == 0o640
    assert not node.spool.exists()


def test_interpreter_without_the_package_is_logged(node: SimNode) -> None:
    bare = node.root / "bare-venv"
    venv.create(bare, with_pip=False)  # no jobcarbon in it: the import fails before the hook can log
    (node.root / "logs").mkdir()
    run_hook(node, "prolog", 22, JOBCARBON_PYTHON=str(bare / "bin" / "python3"), JOBCARBON_PYTHONPATH="")
    text = (node.root / "logs" / "hooks.log").read_text()
    assert "jobcarbon prolog skipped for job 22" in text
    assert "exited with status 1 before the hook ran (jobcarbon package missing or broken?)" in text


def test_hostile_job_id_is_not_quoted(node: SimNode) -> None:
    (node.root / "logs").mkdir()
    run_hook(node, "prolog", 23, JOBCARBON_PYTHON="/nonexistent/python3", SLURM_JOB_ID="1;$(id)`id`")
    text = (node.root / "logs" / "hooks.log").read_text()
    assert "skipped for job ?:" in text
    assert "$(id)" not in text
    assert "`" not in text


def test_log_file_symlink_is_not_followed(node: SimNode) -> None:
    (node.root / "logs").mkdir()
    target = node.root / "elsewhere"
    target.write_text("")
    (node.root / "logs" / "hooks.log").symlink_to(target)
    run_hook(node, "epilog", 24, JOBCARBON_PYTHON="/nonexistent/python3")
    assert target.read_text() == ""


def test_missing_log_directory_still_exits_zero(node: SimNode) -> None:
    run_hook(node, "prolog", 25, JOBCARBON_PYTHON="/nonexistent/python3")
    assert not (node.root / "logs").exists()


def test_a_working_hook_writes_nothing_to_the_hooks_log(node: SimNode) -> None:
    (node.root / "logs").mkdir()
    node.job_cgroup(26)
    run_hook(node, "prolog", 26)
    run_hook(node, "epilog", 26)
    assert not (node.root / "logs" / "hooks.log").exists()
