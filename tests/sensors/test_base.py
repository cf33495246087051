"""The face every sensor shares: statuses, the error, and the registry doctor iterates."""

from __future__ import annotations

from slurm_plugin.errors import JobcarbonError
from slurm_plugin.sensors.base import SensorUnavailable, Status
from slurm_plugin.sensors.registry import NODE_SENSORS


def test_unavailable_is_a_jobcarbon_error_and_absent_unless_told() -> None:
    error = SensorUnavailable("no powercap tree")
    assert isinstance(error, JobcarbonError)
    assert error.status is Status.ABSENT
    assert SensorUnavailable("init failed", Status.ERROR).status is Status.ERROR


def test_the_registry_names_every_node_sensor_once() -> None:
    assert list(NODE_SENSORS) == ["procfs", "cgroup", "rapl", "nvml"]


def test_an_agent_of_the_previous_release_catches_what_nvml_raises() -> None:
    import slurm_plugin.sensors
    from slurm_plugin.sensors import nvml

    assert nvml.SensorUnavailable is slurm_plugin.sensors.SensorUnavailable is SensorUnavailable
