"""Sensors: one module per data source behind one face (`base.Sensor`), each returning raw readings
with a per-channel status; `registry.NODE_SENSORS` lists them for `jobcarbon doctor`.

The names below are kept one release, and `nvml` imports them from here: a node agent of the previous
release, still running across the upgrade, loads `nvml` lazily at its first GPU job and must catch
the `SensorUnavailable` it raises with the class it imported from this package at start-up.
"""

from slurm_plugin.sensors.base import Reading as Reading
from slurm_plugin.sensors.base import SensorUnavailable as SensorUnavailable
from slurm_plugin.sensors.base import Status as Status
