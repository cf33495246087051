"""A new SQLite database is private: 0640 in the query service's group where it exists, else 0600, with
its -wal and -shm files alike; an existing database open to all users is reported."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest

from slurm_plugin.storage import sqlite_backend
from slurm_plugin.storage.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def own_group(monkeypatch: pytest.MonkeyPatch) -> int:
    """Stand the caller's own group in for `jobcarbon` (every user may chown a file to it)."""
    gid = os.getegid()
    monkeypatch.setattr(sqlite_backend, "DATABASE_GROUP", grp.getgrgid(gid).gr_name)
    return gid


def test_new_database_is_0640_in_the_group_with_wal_and_shm_alike(tmp_path: Path, own_group: int) -> None:
    path = tmp_path / "jobcarbon.db"
    previous = os.umask(0o022)
    try:
        store = Store.open(f"sqlite:///{path}", 5.0, create=True)
        try:
            for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                assert name.exists(), name
                assert mode(name) == 0o640, name
                assert name.stat().st_gid == own_group
        finally:
            store.close()
    finally:
        os.umask(previous)


def test_without_the_group_the_database_is_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_backend, "DATABASE_GROUP", "no-such-group-jobcarbon-test")
    path = tmp_path / "jobcarbon.db"
    Store.open(f"sqlite:///{path}", 5.0, create=True).close()
    assert mode(path) == 0o600


def test_a_database_open_to_all_is_reported_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobcarbon.db"
    Store.open(f"sqlite:///{path}", 5.0, create=True).close()
    path.chmod(0o644)
    Store.open(f"sqlite:///{path}", 5.0, create=True).close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{path} readable by all users" in err
    assert "chmod o-rwx" in err
    assert mode(path) == 0o644


def test_delivery_never_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobcarbon.db"
    with pytest.raises(Exception, match="does not exist"):
        Store.open(f"sqlite:///{path}", 5.0, create=False)
    assert not path.exists()


def test_a_symlink_in_place_of_a_new_database_is_not_followed_for_creation(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.db"
    (tmp_path / "jobcarbon.db").symlink_to(target)
    sqlite_backend.private_file(str(tmp_path / "jobcarbon.db"))
    assert not target.exists()
