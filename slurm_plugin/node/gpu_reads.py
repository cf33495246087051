"""The sampler's NVML session: opened on the first job with GPUs, retried with back-off after a failed
start-up, and read once per tracked physical GPU per tick (power, utilisation and memory in use; the
energy counter only where an anchor is due).

Kept apart from `sampler` so that the node part of a tick never waits on NVML's start-up, and so the
per-GPU reads, whose cost bench/gpu_costs.py and bench/gpu_util_cost.py measure, sit in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from slurm_plugin.config import Nvml
from slurm_plugin.node.jobenv import JobInfo
from slurm_plugin.sensors.base import SensorUnavailable, Status

Log = Callable[[str, str], None]
MIB = 2**20


class GpuRead(NamedTuple):
    """One tick's reads of one physical GPU; `energy_mj` is moved back to the tick's time."""

    power_mw: int | None
    energy_mj: float | None
    no_counter: bool  # the counter proved NotSupported on this read (pre-Volta)
    util_pct: int | None
    mem_mib: int | None


class NvmlSession:
    """NVML for the sampler: None until a job with GPUs opens it; a failed start-up (a driver loaded
    after the agent) is tried again after `nvml.retry_interval_s`, doubled after each failure up to 20
    times that, so a persistent agent recovers; `nvml.enabled: false` is never tried again."""

    def __init__(self, settings: Nvml, log: Log):
        self.settings = settings
        self.log = log
        self.sensor: Any = None
        self.problem: str | None = None
        self.retry_at = 0.0
        self._backoff_s = 0.0

    def open(self, now: float) -> Any:
        """The open sensor, or None (`problem` says why)."""
        if self.sensor is None and now >= self.retry_at:
            from slurm_plugin.sensors.nvml import NvmlSensor  # pynvml only on nodes with GPU jobs

            first = self.settings.retry_interval_s
            try:
                self.sensor = NvmlSensor.open(self.settings)
            except SensorUnavailable as exc:
                self.problem = str(exc)
                self._backoff_s = min(max(2 * self._backoff_s, first), 20 * first)
                if not self.settings.enabled:  # a setting, not a failure: never tried again
                    self.retry_at = float("inf")
                    return None
                self.retry_at = now + self._backoff_s
                self.log("warning", f"{exc}; trying again in {self._backoff_s:g} s")
            else:
                if self.problem is not None:
                    self.log("info", f"NVML opened after an earlier failure ({self.problem})")
                self.problem, self._backoff_s = None, 0.0
        return self.sensor

    def close(self) -> None:
        """Shut NVML down (nvmlShutdown): the agent's last act, so a host process that ran it starts a
        later NVML session afresh."""
        if self.sensor is not None:
            self.sensor.close()
            self.sensor = None

    def resolve(self, info: JobInfo, now: float) -> tuple[list[dict[str, Any]], list[str]]:
        """The job's GPUs as its journal header lists them, and the problems found resolving them."""
        if not info.job_gpus and not info.cuda_visible_devices:
            return [], []
        sensor = self.open(now)
        if sensor is None:
            return [], [f"job has GPUs but NVML is unavailable: {self.problem}"]
        devices, problems = sensor.resolve(info.job_gpus, info.cuda_visible_devices)
        described = [
            {
                "uuid": d.uuid,
                "model": d.name,
                "pci_bus_id": d.pci_bus_id,
                "minor": d.minor,
                "parent_uuid": d.parent_uuid,
                "share": d.share,
            }
            for d in devices
        ]
        return described, problems

    def read(self, uuid: str, tick_s: float, counter: bool) -> GpuRead:
        """Power, utilisation and memory of a physical GPU, and its energy counter when `counter`.

        A counter read after the tick's time (a hook's deferred tick, or just the node's reads first)
        is moved back to it by the power read with it: the error is at most the power's change times
        the delay, a few ms (docs/attribution.md).
        """
        sensor = self.sensor
        power_mw = sensor.power_mw(uuid)
        energy_mj: float | None = None
        no_counter = False
        if counter:
            reading = sensor.read([uuid])[uuid]
            no_counter = reading.status is Status.NOT_SUPPORTED
            energy_mj = reading.energy_mj
            if energy_mj is not None and power_mw is not None:
                energy_mj -= power_mw * max(time.time() - tick_s, 0.0)  # mW x s = mJ
        use = sensor.use(uuid)
        mem_mib = None if use.mem_used_b is None else round(use.mem_used_b / MIB)
        return GpuRead(power_mw, energy_mj, no_counter, use.util_pct, mem_mib)
