"""Log lines reach syslog, else journald, else a file: none is lost on a host without syslog."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_plugin.eventlog import EventLog


@pytest.fixture
def journald() -> Iterator[tuple[socket.socket, Path]]:
    """A datagram socket standing in for journald's (in a short directory: socket paths are short)."""
    with tempfile.TemporaryDirectory(prefix="jc-") as directory:
        path = Path(directory) / "journal.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(str(path))
        server.settimeout(5.0)
        with server:
            yield server, path


def test_without_syslog_lines_go_to_journald_natively(
    journald: tuple[socket.socket, Path], tmp_path: Path
) -> None:
    server, path = journald
    log = EventLog(
        "agent", tmp_path / "jobcarbon.log", syslog_socket=tmp_path / "no-dev-log", journal_socket=path
    )
    log("error", "job 7.0: cannot write\nits record")
    fields = dict(line.split("=", 1) for line in server.recv(4096).decode().splitlines())
    assert fields["MESSAGE"] == "agent: job 7.0: cannot write its record"
    assert fields["PRIORITY"] == "3"
    assert fields["SYSLOG_IDENTIFIER"] == "jobcarbon"
    assert "cannot write its record" in (tmp_path / "jobcarbon.log").read_text()  # the configured file too


def test_without_any_system_log_or_log_file_lines_go_to_the_hook_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBCARBON_HOOK_LOG", str(tmp_path / "log" / "hooks.log"))
    log = EventLog("prolog", None, syslog_socket=tmp_path / "none", journal_socket=tmp_path / "none")
    log("error", "jobcarbon prolog skipped: /etc/jobcarbon/config.yaml: file not found")
    lines = (tmp_path / "log" / "hooks.log").read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("] error: jobcarbon prolog skipped: /etc/jobcarbon/config.yaml: file not found")


def test_a_configured_log_file_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBCARBON_HOOK_LOG", str(tmp_path / "hooks.log"))
    log = EventLog(
        "agent", tmp_path / "agent.log", syslog_socket=tmp_path / "none", journal_socket=tmp_path / "none"
    )
    log("info", "agent started")
    assert "agent started" in (tmp_path / "agent.log").read_text()
    assert not (tmp_path / "hooks.log").exists()


def test_a_journald_that_went_away_loses_the_line_without_raising(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="jc-") as directory:
        path = Path(directory) / "journal.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(str(path))
        log = EventLog("agent", tmp_path / "agent.log", syslog_socket=tmp_path / "none", journal_socket=path)
        server.close()
        path.unlink()
        log("error", "still logged to the file")
    assert "still logged to the file" in (tmp_path / "agent.log").read_text()
