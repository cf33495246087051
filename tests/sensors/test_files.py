"""The small-file readers and parsers every sensor uses on every tick."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_plugin.sensors.files import READ_SIZE, flat_keyed, parse_cpulist, read_int, read_text
from tests.sensors.test_cgroup import V1_MEMORY_STAT, V2_CPU_STAT, V2_MEMORY_STAT


def test_read_int_takes_a_counter_with_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "energy_uj"
    path.write_text("262143328850\n")
    assert read_int(str(path)) == 262143328850


def test_read_int_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "energy_uj"
    path.write_text("")
    with pytest.raises(ValueError, match="invalid literal"):
        read_int(path)


@pytest.mark.parametrize("size", [0, 1, READ_SIZE - 1, READ_SIZE, READ_SIZE + 1, 3 * READ_SIZE])
def test_read_text_reads_to_the_end(tmp_path: Path, size: int) -> None:
    text = ("total_inactive_file 4096\n" * (size // 25 + 1))[:size]
    path = tmp_path / "memory.stat"
    path.write_text(text)
    assert read_text(str(path)) == text


def test_read_text_of_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_text(str(tmp_path / "memory.stat"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-3,8\n", {0, 1, 2, 3, 8}),
        ("0", {0}),
        ("0-1,4-5,10-11", {0, 1, 4, 5, 10, 11}),
        ("\n", set()),
        ("", set()),
        ("3-3", {3}),
    ],
)
def test_parse_cpulist(text: str, expected: set[int]) -> None:
    assert parse_cpulist(text) == frozenset(expected)


@pytest.mark.parametrize("text", ["3-1", "a", "-1", "0-70000", "0-3;8", "0-3,x"])
def test_parse_cpulist_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad cpu range|invalid literal"):
        parse_cpulist(text)


def test_flat_keyed_picks_the_exact_key() -> None:
    assert flat_keyed(V1_MEMORY_STAT, "total_inactive_file") == 402653184
    assert flat_keyed(V1_MEMORY_STAT, "inactive_file") == 0
    assert flat_keyed(V2_MEMORY_STAT, "inactive_file") == 402653184
    assert flat_keyed(V2_MEMORY_STAT, "file") == 536870912  # not file_mapped, file_dirty, ...
    assert flat_keyed(V2_CPU_STAT, "usage_usec") == 1234567890  # the first line
    assert flat_keyed("anon 5\ninactive_file 7", "inactive_file") == 7  # a last line without newline
    assert flat_keyed("anon 5\n", "inactive_file") == 0


def test_flat_keyed_refuses_a_value_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        flat_keyed("anon 5\ninactive_file x\n", "inactive_file")
