"""How busy a job kept its GPUs, from the journal's per-tick NVML readings: the record's compact
`timeline.gpu_use` and the per-GPU summary in `efficiency.gpus` (docs/record.md).

The waste rule (docs/attribution.md, "Waste"): an interval whose GPU reading is under the idle
threshold (`advice.gpu_idle_util_pct`, written into the journal's header at the job's start) counts
that GPU's energy in the interval as idle. An interval without a reading counts as neither busy nor
idle: it is left out of the GPU's sampled time.
"""

from __future__ import annotations

import itertools
from typing import Any

MIB = 2**20
DEFAULT_IDLE_BELOW_PCT = 5.0  # config.Advice.gpu_idle_util_pct's default, for journals written without it


class _Gpu:
    """One GPU's utilisation and memory columns (one value per timeline row) and sums."""

    def __init__(self, rows_before: int):
        self.util: list[int | None] = [None] * rows_before
        self.mem: list[int | None] = [None] * rows_before
        self.sampled_s = self.busy_s = self.idle_s = self.idle_j = 0.0
        self.util_s = 0.0  # Σ util % × seconds
        self.util_max = 0
        self.mem_peak_mib = 0

    def add(self, util: Any, mem: Any, seconds: float, joules: float, idle_below: float) -> None:
        util = util if type(util) is int and 0 <= util <= 100 else None
        mem = mem if type(mem) is int and mem >= 0 else None
        self.util.append(util)
        self.mem.append(mem)
        self.mem_peak_mib = max(self.mem_peak_mib, mem or 0)
        if util is None:
            return
        self.sampled_s += seconds
        self.util_s += util * seconds
        self.util_max = max(self.util_max, util)
        if util < idle_below:
            self.idle_s += seconds
            self.idle_j += joules

    def summary(self) -> dict[str, Any]:
        sampled = self.sampled_s
        return {
            "sampled_s": round(sampled, 3),
            "util_mean_pct": round(self.util_s / sampled, 1) if sampled else None,
            "util_max_pct": self.util_max if sampled else None,
            "idle_fraction": round(self.idle_s / sampled, 4) if sampled else None,
            "mem_peak_bytes": self.mem_peak_mib * MIB,
            "idle_j": round(self.idle_j, 3),
        }


class GpuUse:
    """Accumulates the journal's `gpu_use` readings row by row, aligned with the timeline's rows."""

    def __init__(self, idle_below_pct: Any):
        valid = type(idle_below_pct) in (int, float) and 0 <= idle_below_pct <= 100
        self.idle_below = float(idle_below_pct) if valid else DEFAULT_IDLE_BELOW_PCT
        self.gpus: dict[str, _Gpu] = {}
        self.rows = 0

    def add(self, entry: dict[str, Any], seconds: float, inside: float) -> None:
        """One timeline row: each GPU's reading at the interval's end, and its energy in the interval."""
        readings = entry.get("gpu_use")
        if isinstance(readings, dict):
            for uuid in readings:
                if isinstance(uuid, str) and uuid not in self.gpus:
                    self.gpus[uuid] = _Gpu(self.rows)
        energies = entry.get("gpu") or {}
        for uuid, gpu in self.gpus.items():
            util, mem = _pair(readings.get(uuid) if isinstance(readings, dict) else None)
            part = energies.get(uuid)
            joules = float(part[0]) * inside if isinstance(part, list) and part else 0.0
            gpu.add(util, mem, seconds, joules, self.idle_below)
        self.rows += 1

    def timeline(self) -> dict[str, Any] | None:
        """Per GPU, `util_pct` and `mem_mib`: one value per timeline row, run-length coded (`runs`)."""
        if not self.gpus:
            return None
        return {
            uuid: {"util_pct": runs(gpu.util), "mem_mib": runs(gpu.mem)} for uuid, gpu in self.gpus.items()
        }

    def summary(self) -> dict[str, Any]:
        """The efficiency block's GPU part: the threshold, per-GPU figures and the idle GPUs' energy."""
        return {
            "gpu_idle_util_pct": self.idle_below,
            "gpus": {uuid: gpu.summary() for uuid, gpu in self.gpus.items()},
            "idle_gpu_j": round(sum(gpu.idle_j for gpu in self.gpus.values()), 3),
        }


def runs(values: list[int | None]) -> str:
    """Values as one string of comma-separated runs, "VALUE" or "VALUE*COUNT", an empty VALUE for
    null (always with its count): "0*8640" is a day of an idle GPU at 10 s. A string, not a JSON list,
    because the outbox writes records indented (a line per list item): a week at 10 s of eight busy GPUs
    then grows 1.3x, not 2x (bench/gpu_util_cost.py)."""
    tokens: list[str] = []
    for value, group in itertools.groupby(values):
        count = sum(1 for _ in group)
        text = "" if value is None else str(value)
        tokens.append(f"{text}*{count}" if count > 1 or value is None else text)  # "" is no rows
    return ",".join(tokens)


def expand(text: str) -> list[int | None]:
    """The values of a `runs` string, one per timeline row."""
    values: list[int | None] = []
    for token in text.split(",") if text else []:
        value, _, count = token.partition("*")
        values += [int(value) if value else None] * (int(count) if count else 1)
    return values


def _pair(value: Any) -> tuple[Any, Any]:
    if isinstance(value, list) and len(value) == 2:
        return value[0], value[1]
    return None, None
