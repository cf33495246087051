"""The sample journal: JSON lines that survive a crash, with a torn last line skipped and flagged."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from slurm_plugin.methods import Method
from slurm_plugin.node import journal
from slurm_plugin.node.journal import JournalError, JournalWriter

HEADER = {
    "type": "header",
    "version": 1,
    "job": {"cluster": "hpc", "job_id": 4242, "restart_count": 0, "node": "node001"},
    "start": 1767225600.0,
    "first_sample": 1767225600.4,
    "gpus": [],
    "node_info": {"ncpus": 4},
}
INTERVAL = {
    "type": "interval",
    "t0": 1767225600.4,
    "t1": 1767225610.4,
    "cpu_s": 19.87,
    "cpus": 2,
    "mem_b": 17179869184,
    "cpu": [740.0, "apportioned"],
    "dram": [15.0, "apportioned"],
    "gpu": {},
    "cpuset": [0, 1],
}


def lines(*entries: dict) -> str:
    return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)


@pytest.mark.parametrize("fsync", [True, False])
def test_writer_and_reader_round_trip(tmp_path: Path, fsync: bool) -> None:
    path = tmp_path / "journal.jsonl"
    writer = JournalWriter(path, fsync=fsync)
    writer.append(HEADER)
    writer.append(INTERVAL)
    writer.append({"type": "note", "t": 1767225610.4, "text": "job cgroup not found yet"})
    writer.append({"type": "resume", "t": 1767225620.0, "reason": "agent restarted"})
    writer.close()
    writer.close()
    read = journal.read(path)
    assert read.header == HEADER
    assert read.intervals == [INTERVAL]
    assert read.notes == ["job cgroup not found yet"]
    assert read.resumes == [{"type": "resume", "t": 1767225620.0, "reason": "agent restarted"}]
    assert read.torn is False
    assert path.stat().st_mode & 0o777 == 0o600


def test_lines_are_compact_json_with_a_method_written_as_its_value(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    writer = JournalWriter(path, fsync=False)
    writer.append({**INTERVAL, "cpu": [740.0, Method.APPORTIONED], "dram": [15.0, Method.APPORTIONED]})
    writer.append({"type": "note", "t": 1767225610.4, "text": "job «naïve» not found"})
    writer.close()
    note = {"type": "note", "t": 1767225610.4, "text": "job «naïve» not found"}
    assert path.read_text(encoding="ascii") == lines(INTERVAL, note)


def test_writer_appends_to_an_existing_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(lines(HEADER))
    writer = JournalWriter(path, fsync=False)
    writer.append(INTERVAL)
    writer.close()
    assert journal.read(path).intervals == [INTERVAL]


def test_writer_refuses_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "journal.jsonl").symlink_to(victim)
    with pytest.raises(OSError, match=os.strerror(errno.ELOOP)):
        JournalWriter(tmp_path / "journal.jsonl", fsync=False)
    assert victim.read_text() == "precious\n"


def test_torn_last_line_is_skipped_and_flagged(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    complete = lines(HEADER, INTERVAL)
    torn = lines(INTERVAL)[:57]  # SIGKILL in the middle of the write
    path.write_text(complete + torn)
    read = journal.read(path)
    assert read.intervals == [INTERVAL]
    assert read.torn is True


def test_corrupt_line_in_the_middle_is_skipped_and_flagged(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(lines(HEADER).encode() + b"\x00\x00\x00\n" + lines(INTERVAL).encode())
    read = journal.read(path)
    assert read.intervals == [INTERVAL]
    assert read.torn is True


def test_a_clean_journal_is_not_torn(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(lines(HEADER, INTERVAL, INTERVAL))
    read = journal.read(path)
    assert len(read.intervals) == 2
    assert read.torn is False


@pytest.mark.parametrize("text", ["", lines(INTERVAL)[:20]])
def test_no_header_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(text)
    with pytest.raises(JournalError, match=r"no header line$"):
        journal.read(path)


def test_entry_before_the_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(lines(INTERVAL, HEADER))
    with pytest.raises(JournalError, match=r"journal\.jsonl:1: entry before the header$"):
        journal.read(path)


def test_unsupported_version_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(lines({**HEADER, "version": 2}))
    with pytest.raises(JournalError, match=r":1: unsupported journal version 2$"):
        journal.read(path)


def test_a_second_header_and_unknown_entries_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(lines(HEADER, {**HEADER, "start": 0.0}, {"type": "future", "x": 1}, [1, 2], INTERVAL))
    read = journal.read(path)
    assert read.header["start"] == 1767225600.0
    assert read.intervals == [INTERVAL]
    assert read.torn is False


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        journal.read(tmp_path / "journal.jsonl")


def test_lines_a_full_disk_refuses_wait_in_order_and_leave_no_torn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.jsonl"
    writer = JournalWriter(path, fsync=False)
    writer.append(HEADER)
    real = journal.write_all

    def half_then_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal, "write_all", half_then_full)
    writer.append({"type": "interval", "t0": 0, "t1": 1})
    writer.append({"type": "interval", "t0": 1, "t1": 2})
    assert writer.error is not None
    assert writer.error.errno == errno.ENOSPC
    assert len(path.read_bytes().splitlines()) == 1  # the half line was cut off again
    monkeypatch.setattr(journal, "write_all", real)
    assert writer.close() == []  # both written now, in order
    written = journal.read(path)
    assert ([e["t0"] for e in written.intervals], written.torn) == ([0, 1], False)
