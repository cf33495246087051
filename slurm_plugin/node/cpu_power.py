"""The node's CPU package power model (TDP and idle power): the static share's basis, and the estimate
where RAPL is missing; `jobcarbon doctor` prints where each figure came from."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from slurm_plugin.config import Cpu as CpuSettings
from slurm_plugin.sensors.rapl import RaplZone

FALLBACK_W_PER_CPU = 4.0  # CodeCarbon's per-thread default when no TDP is known (core/cpu.py)


class CpuPower(NamedTuple):
    """The node's CPU package power model, and where each figure came from (doctor prints it)."""

    tdp_w: float
    idle_w: float
    tdp_from: str  # "cpu.tdp_w", "rapl" (the zones' constraint) or "fallback" (FALLBACK_W_PER_CPU per CPU)
    idle_from: str  # "cpu.idle_power_w" or "cpu.idle_fraction_of_tdp"


def cpu_power_model(cpu: CpuSettings, zones: Collection[RaplZone], ncpus: int) -> CpuPower:
    """TDP and idle power of the node's CPU packages, for the static share and the estimate."""
    packages = [z for z in zones if z.kind == "package"]
    count = max(len({z.package for z in packages}), 1)  # sockets, not dies
    if cpu.tdp_w is not None:
        tdp, tdp_from = cpu.tdp_w * count, "cpu.tdp_w"
    elif packages and all(z.tdp_w for z in packages):
        tdp, tdp_from = sum(z.tdp_w or 0.0 for z in packages), "rapl"
    else:
        tdp, tdp_from = FALLBACK_W_PER_CPU * ncpus, "fallback"
    if cpu.idle_power_w is not None:
        return CpuPower(tdp, min(cpu.idle_power_w * count, tdp), tdp_from, "cpu.idle_power_w")
    return CpuPower(tdp, tdp * cpu.idle_fraction_of_tdp, tdp_from, "cpu.idle_fraction_of_tdp")
