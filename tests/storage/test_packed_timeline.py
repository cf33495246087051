"""The packed timeline blob: rows come back exactly as given, nulls included, sorted by start."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from slurm_plugin.storage import packed_timeline

ORIGIN = 1767225600.0  # 2026-01-01T00:00:00Z


def test_rows_come_back_shifted_by_the_origin_with_nulls() -> None:
    rows = [[0, 10, 1.5, None, 3], [10, 20.5, None, None, None]]
    blob = packed_timeline.encode(rows, ORIGIN)
    assert packed_timeline.intervals(blob) == 2
    assert packed_timeline.decode(blob) == [
        (ORIGIN, ORIGIN + 10, 1.5, None, 3.0),
        (ORIGIN + 10, ORIGIN + 20.5, None, None, None),
    ]


def test_rows_are_stored_by_start_keeping_the_order_of_ties() -> None:
    rows = [(20.0, 30.0, 3.0, 0.0, 0.0), (0.0, 10.0, 1.0, 0.0, 0.0), (0.0, 5.0, 2.0, 0.0, 0.0)]
    assert packed_timeline.decode(packed_timeline.encode(rows)) == [rows[1], rows[2], rows[0]]


def test_an_empty_timeline_is_an_empty_blob() -> None:
    assert packed_timeline.encode([], ORIGIN) == b""
    assert packed_timeline.decode(b"") == []


finite = st.floats(min_value=0, max_value=1e18)
energy = st.none() | finite | st.integers(min_value=0, max_value=2**53)


@given(st.lists(st.tuples(finite, finite, energy, energy, energy), max_size=50))
def test_any_valid_rows_round_trip_exactly(rows: list[tuple]) -> None:
    shifted = [(ORIGIN + t0, ORIGIN + t1, *map(_float, energies)) for t0, t1, *energies in rows]
    expected = sorted(shifted, key=_start)
    assert packed_timeline.decode(packed_timeline.encode(rows, ORIGIN)) == expected


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _start(row: tuple) -> float:
    return row[0]


def test_numbers_whose_bytes_straddle_a_nan_stay_numbers() -> None:
    # 0.0 ends in six zero bytes; a number starting with bytes f8 7f completes NAN_BYTES across both.
    after = struct.unpack("<d", b"\xf8\x7f" + bytes(5) + b"\x40")[0]
    rows = [(0.0, 1.0, 0.0, 0.0, 0.0), (1.0, 2.0, after, 0.0, 0.0)]
    blob = packed_timeline.encode(rows)
    assert packed_timeline.NAN_BYTES in blob
    assert packed_timeline.decode(blob) == rows
