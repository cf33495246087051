"""The node's sensors, by the name `jobcarbon doctor` and the docs use: an explicit dict, no import magic.

Each entry opens its sensor from the configuration; opening raises SensorUnavailable where the source
cannot be used at all (NVML without its library), and `probe()` tells the rest.
"""

from __future__ import annotations

from collections.abc import Callable

from slurm_plugin.config import Config
from slurm_plugin.sensors.base import Sensor
from slurm_plugin.sensors.cgroup import CgroupSensor
from slurm_plugin.sensors.nvml import NvmlSensor
from slurm_plugin.sensors.procstat import ProcSensor
from slurm_plugin.sensors.rapl import RaplSensor

NODE_SENSORS: dict[str, Callable[[Config], Sensor]] = {
    "procfs": lambda config: ProcSensor(config.paths.procfs),
    "cgroup": lambda config: CgroupSensor(config.cgroup, config.paths.cgroupfs),
    "rapl": lambda config: RaplSensor(config.paths.sysfs),
    "nvml": lambda config: NvmlSensor.open(config.nvml),
}
