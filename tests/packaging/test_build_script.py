"""packaging/build-deb refuses to start without what it needs, in one line, before it writes anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "build-deb"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BUILD), *args], capture_output=True, text=True, timeout=30, check=False)


def test_no_wheelhouse_is_one_line(tmp_path: Path) -> None:
    result = run("--wheels", str(tmp_path / "missing"), "--out", str(tmp_path / "dist"))
    assert result.returncode == 1
    expected = f"build-deb: no wheelhouse at {tmp_path}/missing (fill it with packaging/fetch-wheels)\n"
    assert result.stderr == expected
    assert not (tmp_path / "dist").exists()


def test_usage_without_arguments() -> None:
    result = run()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: packaging/build-deb --wheels DIR")


def test_bad_revision_is_refused(tmp_path: Path) -> None:
    result = run("--wheels", str(tmp_path), "--revision", "1;rm")
    assert result.returncode == 1
    assert "bad revision" in result.stderr


def test_bad_extras_are_refused(tmp_path: Path) -> None:
    result = run("--wheels", str(tmp_path), "--extras", "report]; rm -rf /")
    assert result.returncode == 1
    assert "bad extras" in result.stderr
