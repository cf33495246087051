"""Reading and parsing the small kernel files sensors read on every tick (sysfs, procfs, cgroupfs)."""

from __future__ import annotations

import os

READ_SIZE = 8192  # more than a job cgroup's memory.stat or cpu.stat holds


def read_int(path: str | os.PathLike[str]) -> int:
    """A one-number file (a counter, a byte count): one read, no Python file object.

    Opened afresh on every read, never kept open: the test bed replaces its simulated sysfs and cgroup
    files by rename, so a kept descriptor would go on reading the old file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return int(os.read(fd, 64))
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    """A small ASCII file, read with os.read: `open()` costs ~3x as much, for every job on every tick.

    A read shorter than asked for is the end of the file for the regular, proc and cgroup files read
    here, which saves the empty read that would confirm it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, READ_SIZE)]
        while len(chunks[-1]) == READ_SIZE:
            chunks.append(os.read(fd, READ_SIZE))
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii")


def parse_cpulist(text: str) -> frozenset[int]:
    """Parse a kernel cpu list such as "0-3,8,10-11"; raises ValueError on anything else."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first < 0 or last < first or last > 65535:
            raise ValueError(f"bad cpu range {part!r}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def flat_keyed(text: str, key: str) -> int:
    """The value of `key` in a flat-keyed file such as memory.stat or cpu.stat (0 when absent).

    Found by one search rather than a split into lines: v1's total_inactive_file is near the end.
    """
    _, found, rest = ("\n" + text).partition(f"\n{key} ")
    return int(rest.partition("\n")[0]) if found else 0
