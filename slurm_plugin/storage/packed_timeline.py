"""A job part's timeline stored as one blob: five columns of little-endian float64.

The columns are start_s, end_s (absolute UTC epoch seconds), cpu_j, dram_j and gpu_j, each for all
intervals in start order; NaN stands for null ("not measured"), which a validated record cannot
otherwise contain. One blob per part instead of a row per interval: ingest writes one row under the
write lock, and a week at 10 s (60,480 intervals) reads back in milliseconds. Standard library only,
so the read-only query path can decode it without the store's imports.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Sequence
from operator import le
from typing import Any

Row = tuple[float, float, float | None, float | None, float | None]
COLUMNS = 5
ITEM_BYTES = 8
NAN_BYTES = struct.pack("<d", math.nan)  # the only NaN `encode` writes, as stored
_BIG_ENDIAN = sys.byteorder == "big"


def encode(rows: Sequence[Sequence[float | None]], origin_s: float = 0.0) -> bytes:
    """The blob of rows [start_s, end_s, cpu_j, dram_j, gpu_j], times shifted by `origin_s`.

    Rows are stored by start time (stably, as the store always returned them); numbers only in the
    times, numbers or None in the energies.
    """
    if not rows:
        return b""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    starts = columns[0]
    if not all(map(le, starts, starts[1:])):  # by start, as version 1's rows were read (shifting keeps order)
        shifted = [origin_s + t for t in starts]
        order = sorted(range(len(shifted)), key=shifted.__getitem__)
        columns = [[column[i] for i in order] for column in columns]
    packed = array("d", [origin_s + t for t in columns[0]])
    packed.extend([origin_s + t for t in columns[1]])
    for column in columns[2:]:
        packed.extend(_energies(column))
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _energies(column: Sequence[float | None]) -> array:
    try:
        return array("d", column)
    except TypeError:  # a null: not measured in that interval
        return array("d", [math.nan if v is None else v for v in column])


def columns(blob: bytes) -> list[array]:
    """The five columns `encode` stored, as float64 arrays in start order; NaN where null."""
    values = array("d")
    values.frombytes(blob)
    if _BIG_ENDIAN:
        values.byteswap()
    n = len(values) // COLUMNS
    return [values[k * n : (k + 1) * n] for k in range(COLUMNS)]


def decode(blob: bytes) -> list[Row]:
    """The rows `encode` stored, as (start_s, end_s, cpu_j, dram_j, gpu_j) tuples, None for null."""
    found: list[Sequence[float | None]] = list(columns(blob))
    n = len(found[0])
    for k in range(2, COLUMNS):
        # A substring search finds (or, straddling two numbers, wrongly suspects) a null in C time.
        if NAN_BYTES in blob[k * n * ITEM_BYTES : (k + 1) * n * ITEM_BYTES]:
            found[k] = [None if v != v else v for v in found[k]]
    return list(zip(*found, strict=True))


def intervals(blob: bytes) -> int:
    """How many rows the blob holds."""
    return len(blob) // (COLUMNS * ITEM_BYTES)
