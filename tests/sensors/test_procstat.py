"""Node CPU time and memory size from procfs, read from a Linux 6.x-shaped fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_plugin.sensors import procstat
from slurm_plugin.sensors.base import Status

PROC = Path(__file__).resolve().parent.parent / "fixtures" / "proc"


@pytest.fixture(autouse=True)
def user_hz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procstat, "USER_HZ", 100)


def busy_s(tmp_path: Path, text: str) -> float:
    (tmp_path / "stat").write_text(text)
    return procstat.read_busy_s(str(tmp_path / "stat"))


def test_reads_the_fixture_node() -> None:
    # busy = user 1132428 + nice 4734 + system 244469 + irq 0 + softirq 15464 + steal 0 ticks;
    # guest columns are already inside user and nice
    assert procstat.read_busy_s(str(PROC / "stat")) == pytest.approx(13970.95)
    assert procstat.read_ncpus(PROC) == 4


def test_mem_total_is_in_bytes() -> None:
    assert procstat.read_mem_total_bytes(PROC) == 16315152 * 1024


def test_guest_time_is_not_counted_twice(tmp_path: Path) -> None:
    assert busy_s(tmp_path, "cpu  100 0 0 900 0 0 0 0 60 0\ncpu0 100 0 0 900 0 0 0 0 60 0\n") == 1.0


def test_steal_irq_and_softirq_are_busy_idle_and_iowait_are_not(tmp_path: Path) -> None:
    assert busy_s(tmp_path, "cpu  0 0 0 700 100 50 25 125 0 0\ncpu0 0 0 0 700 100 50 25 125 0 0\n") == 2.0


def test_an_eight_column_kernel_is_enough(tmp_path: Path) -> None:
    assert procstat.count_cpus("cpu  1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n") == 1
    assert busy_s(tmp_path, "cpu  1 2 3 4 5 6 7 8\n") == pytest.approx(0.27)


def test_offline_cpus_have_no_line() -> None:
    lines = "cpu  4 0 0 4 0 0 0 0 0 0\ncpu0 2 0 0 2 0 0 0 0 0 0\ncpu2 2 0 0 2 0 0 0 0 0 0\n"
    assert procstat.count_cpus(lines) == 2


def test_busy_time_needs_the_aggregate_line_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not the aggregate cpu line"):
        busy_s(tmp_path, "cpu0 1 2 3 4 5 6 7 8\n")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "cpu  1 2 3 4 5 6 7\ncpu0 1 2 3 4 5 6 7\n",
        "cpu0 1 2 3 4 5 6 7 8 0 0\n",
        "cpu  1 2 3 4 5 6 7 8 0 0\nintr 1\n",
        "cpu  1 2 x 4 5 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n",
    ],
)
def test_malformed_stat_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"/proc/stat|invalid literal"):
        procstat.count_cpus(text)


def test_meminfo_without_mem_total() -> None:
    with pytest.raises(ValueError, match="no MemTotal"):
        procstat.parse_meminfo_total("MemFree:  1024 kB\n")


def test_missing_procfs_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        procstat.read_ncpus(tmp_path)
    with pytest.raises(FileNotFoundError):
        procstat.read_mem_total_bytes(tmp_path)


def test_probe_reports_the_node_or_why_not(tmp_path: Path) -> None:
    assert procstat.ProcSensor(PROC).probe().status is Status.OK
    assert procstat.ProcSensor(tmp_path / "absent").probe().status is Status.ABSENT
    (tmp_path / "stat").write_text("cpu 1 2\n")
    (tmp_path / "meminfo").write_text("MemTotal: 1024 kB\n")
    assert procstat.ProcSensor(tmp_path).probe().status is Status.ERROR
