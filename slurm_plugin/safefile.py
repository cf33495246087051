"""Create spool and outbox files safely as root: no symlink is ever followed, nothing is half-written.

Spool directories are root-owned and private; a directory that is a symlink or belongs to someone
else is refused rather than repaired, since it means someone tampered with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from pathlib import Path

CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class SpoolError(OSError):
    """A spool path is unsafe or cannot be created."""


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (and parents) if needed and check it is a real directory owned by us."""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise SpoolError(exc.errno, f"cannot create {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SpoolError(f"{path} is not a directory (a symlink or a file is refused)")
    if info.st_uid != os.geteuid():
        raise SpoolError(f"{path} is owned by uid {info.st_uid}, not {os.geteuid()}")
    if stat.S_IMODE(info.st_mode) & 0o022:
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o022, follow_symlinks=False)
    return path


def atomic_write(path: Path, data: bytes, mode: int = 0o600, fsync: bool = True) -> None:
    """Write `data` to a fresh temporary file beside `path`, then rename it over `path`."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, CREATE, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(temporary)
        raise
    if fsync:
        sync_dir(path.parent)


def read_nofollow(path: Path, limit: int = 65536) -> bytes:
    """Up to `limit` bytes of a regular file, refusing a symlink in its place."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def sync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable across a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_append(path: Path, mode: int = 0o600) -> int:
    """An O_APPEND descriptor on `path`, created if missing, refusing a symlink."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def lock_file(path: Path, wait_s: float) -> int | None:
    """flock(LOCK_EX) on `path`, retrying for up to `wait_s`; the fd is the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)
