"""Node-wide CPU time and memory size from procfs: the denominators of the CPU and DRAM shares."""

from __future__ import annotations

import operator
import os
from pathlib import Path

from slurm_plugin.sensors.base import Probe, Status

# proc(5): /proc/stat times are in USER_HZ units, reported by sysconf(_SC_CLK_TCK).
USER_HZ = os.sysconf("SC_CLK_TCK")
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (guest is inside user)
_BUSY_COLUMNS = operator.itemgetter(*(i + 1 for i in BUSY_FIELDS))  # of the "cpu" line's split


def count_cpus(text: str) -> int:
    """Online CPUs in /proc/stat text (offline ones have no line); raises ValueError on a malformed file."""
    ncpus = 0
    found = False
    for line in text.splitlines():
        if line.startswith("cpu "):
            _busy_s(line.split())  # checks the aggregate line as the sampler will read it
            found = True
        elif line.startswith("cpu") and line[3:4].isdigit():
            ncpus += 1
    if not found or ncpus == 0:
        raise ValueError("/proc/stat: no aggregate cpu line or no per-cpu lines")
    return ncpus


def read_ncpus(procfs: Path) -> int:
    return count_cpus((procfs / "stat").read_text())


def read_busy_s(stat_path: str) -> float:
    """Node busy CPU seconds from the aggregate line of /proc/stat alone (it has a line per CPU)."""
    fd = os.open(stat_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        line = os.read(fd, 1024).split(b"\n", 1)[0]
    finally:
        os.close(fd)
    fields = line.split()
    if fields[:1] != [b"cpu"]:
        raise ValueError("/proc/stat: first line is not the aggregate cpu line")
    return _busy_s(fields)


def _busy_s(fields: list[bytes] | list[str]) -> float:
    """Busy seconds from the split aggregate line ("cpu" first); kernels since 2.6.11 write 8+ times."""
    if len(fields) < 9:
        raise ValueError("/proc/stat: cpu line has fewer than 8 fields")
    return sum(map(int, _BUSY_COLUMNS(fields))) / USER_HZ


def parse_meminfo_total(text: str) -> int:
    """MemTotal in bytes; raises ValueError when absent."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            return int(parts[1]) * 1024
    raise ValueError("/proc/meminfo: no MemTotal line")


def read_mem_total_bytes(procfs: Path) -> int:
    return parse_meminfo_total((procfs / "meminfo").read_text())


class ProcSensor:
    """Node CPU time and memory size as `jobcarbon doctor` sees them; the agent cannot sample without."""

    name = "procfs"

    def __init__(self, procfs: Path):
        self.procfs = Path(procfs)

    def probe(self) -> Probe:
        try:
            ncpus = read_ncpus(self.procfs)
            memory = read_mem_total_bytes(self.procfs)
        except FileNotFoundError as exc:
            return Probe(Status.ABSENT, f"{self.procfs}: {exc}")
        except (OSError, ValueError) as exc:
            return Probe(Status.ERROR, f"{self.procfs}: {exc}")
        return Probe(Status.OK, f"{ncpus} CPUs, {memory / 1024**3:.1f} GiB memory")

    def close(self) -> None:
        """Nothing is held: every read opens its file afresh."""
