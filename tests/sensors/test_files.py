"""The small-file readers every sensor uses on every tick."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_plugin.sensors.files import READ_SIZE, read_int, read_text


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
