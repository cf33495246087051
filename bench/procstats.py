"""Per-process CPU time and memory from /proc (proc(5)): what the agent costs the node."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/<pid>/stat fields 14 and 15."""
    text = (PROC / str(pid) / "stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def runtime_s(pid: int) -> float:
    """Scheduler run time summed over live threads (/proc/<pid>/task/*/schedstat, ns resolution)."""
    total_ns = 0
    for task in (PROC / str(pid) / "task").iterdir():
        try:
            total_ns += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total_ns / 1e9


def status_kb(pid: int, field: str) -> int:
    """A `kB` line of /proc/<pid>/status, such as VmHWM (peak RSS) or VmRSS."""
    return _kb_line(PROC / str(pid) / "status", field)


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes mapping them."""
    return _kb_line(PROC / str(pid) / "smaps_rollup", "Pss")


def _kb_line(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise KeyError(f"{field} not in {path}")


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie awaiting its (adoptive) parent."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return text[text.rindex(")") + 2] != "Z"


def pids_with_env(name: str, value: str) -> list[int]:
    """Pids whose environment holds name=value: the agents this benchmark's own config started."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in environ and alive(int(entry.name)):
            found.append(int(entry.name))
    return found
