"""Safe spool files as root: refuse tampered directories, never follow a symlink, never half-write."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from slurm_plugin import safefile
from slurm_plugin.safefile import SpoolError, atomic_write, ensure_dir, open_append, write_all

OTHER_UID = 12345
pytestmark = pytest.mark.usefixtures("slurmd_umask")


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- ensure_dir -----------------------------------------------------------------------------------


def test_ensure_dir_creates_private_parents(tmp_path: Path) -> None:
    path = ensure_dir(tmp_path / "spool" / "jobs")
    assert path.is_dir()
    assert path.stat().st_mode & 0o777 == 0o700
    assert ensure_dir(path) == path


def test_ensure_dir_refuses_a_symlinked_directory(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "spool").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SpoolError, match="is not a directory"):
        ensure_dir(tmp_path / "spool")


def test_ensure_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("")
    with pytest.raises(SpoolError, match="cannot create"):
        ensure_dir(tmp_path / "spool")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_ensure_dir_refuses_a_directory_owned_by_someone_else(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir(mode=0o700)
    os.chown(tmp_path / "spool", OTHER_UID, OTHER_UID)
    with pytest.raises(SpoolError, match=f"owned by uid {OTHER_UID}, not 0"):
        ensure_dir(tmp_path / "spool")


def test_ensure_dir_removes_group_and_world_write(tmp_path: Path) -> None:
    (tmp_path / "outbox").mkdir()
    os.chmod(tmp_path / "outbox", 0o777)  # noqa: S103 - the tampering under test
    ensure_dir(tmp_path / "outbox", 0o755)
    assert (tmp_path / "outbox").stat().st_mode & 0o777 == 0o755


# -- atomic_write ---------------------------------------------------------------------------------


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "job.json"
    atomic_write(target, b'{"start": 1}')
    assert target.read_bytes() == b'{"start": 1}'
    assert target.stat().st_mode & 0o777 == 0o600
    atomic_write(target, b'{"start": 2}', mode=0o640, fsync=False)
    assert target.read_bytes() == b'{"start": 2}'
    assert target.stat().st_mode & 0o777 == 0o640
    assert leftovers(tmp_path) == []


def test_atomic_write_of_a_large_payload(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    atomic_write(tmp_path / "record.json", data, fsync=False)
    assert (tmp_path / "record.json").read_bytes() == data


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:x:0:0\n")
    target = tmp_path / "stop"
    target.symlink_to(victim)
    atomic_write(target, b'{"end": 2}')
    assert victim.read_text() == "root:x:0:0\n"
    assert not target.is_symlink()
    assert target.read_bytes() == b'{"end": 2}'


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:x:0:0\n")
    target = tmp_path / "stop"
    (tmp_path / f".stop.{os.getpid()}.tmp").symlink_to(victim)
    atomic_write(target, b'{"end": 2}')
    assert victim.read_text() == "root:x:0:0\n"
    assert target.read_bytes() == b'{"end": 2}'
    assert leftovers(tmp_path) == []


def test_a_stale_temporary_file_is_discarded(tmp_path: Path) -> None:
    (tmp_path / f".stop.{os.getpid()}.tmp").write_text("half a reco")
    atomic_write(tmp_path / "stop", b"{}", fsync=False)
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_neither_temporary_nor_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "job.json"
    target.write_bytes(b"old")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safefile.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new", fsync=True)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_failed_rename_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "job.json").mkdir()  # something that cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "job.json", b"{}", fsync=False)
    assert leftovers(tmp_path) == []


# -- append ---------------------------------------------------------------------------------------


def test_open_append_appends_and_refuses_symlinks(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    for line in (b"one\n", b"two\n"):
        fd = open_append(path)
        write_all(fd, line)
        os.close(fd)
    assert path.read_bytes() == b"one\ntwo\n"
    assert path.stat().st_mode & 0o777 == 0o600
    (tmp_path / "link").symlink_to(path)
    with pytest.raises(OSError, match=os.strerror(errno.ELOOP)) as caught:
        open_append(tmp_path / "link")
    assert caught.value.errno == errno.ELOOP


def test_sync_dir_needs_a_directory(tmp_path: Path) -> None:
    safefile.sync_dir(tmp_path)
    (tmp_path / "file").touch()
    with pytest.raises(NotADirectoryError):
        safefile.sync_dir(tmp_path / "file")
