"""NvmlSensor through the real pynvml, which loads the C stand-in built by tests/sensors/conftest.py.

The node below is enumerated by NVML in an order that matches neither the minor numbers nor the PCI
bus ids, the case where Slurm's GRES index and NVML's index name different GPUs (jobstats "GPU
Ownership Caveats"; research notes §2.4).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from slurm_plugin.node.counters import EnergyCounter
from slurm_plugin.sensors.base import SensorUnavailable, Status
from slurm_plugin.sensors.nvml import NO_LIBRARY, GpuUse, NvmlSensor
from testbed.nvml_standin import (
    CONFIG_ENV,
    CONFIG_NAME,
    ENERGY_CALL,
    GPU_IS_LOST,
    NOT_SUPPORTED,
    POWER_CALL,
    FakeGpu,
    FakeMig,
    call_counts,
    load_line,
    write_config,
)

if TYPE_CHECKING:
    from tests.sensors.conftest import NvmlStandIn


def uuid(n: int, prefix: str = "GPU") -> str:
    return f"{prefix}-{n:08x}-1111-4222-8333-{n:012x}"


A, B, C, D = (uuid(n) for n in (0xA, 0xB, 0xC, 0xD))
NODE = [  # NVML index order
    FakeGpu(A, minor=2, pci_bus_id="00000000:C1:00.0", power_mw=300_000),
    FakeGpu(B, minor=0, pci_bus_id="00000000:41:00.0", power_mw=200_000),
    FakeGpu(C, minor=3, pci_bus_id="00000000:01:00.0"),
    FakeGpu(D, minor=1, pci_bus_id="00000000:81:00.0"),
]
BY_MINOR = [B, D, A, C]
BY_PCI = [C, B, D, A]
MIG_NEW, MIG_OLD = uuid(0xE1, "MIG"), f"MIG-{uuid(0xE)}/1/0"
MIG_PARENT = FakeGpu(
    uuid(0xE),
    minor=4,
    pci_bus_id="00000000:E1:00.0",
    max_mig=7,
    migs=(FakeMig(MIG_NEW, slices=3), FakeMig(MIG_OLD, slices=1)),
)


@pytest.fixture
def sensor(nvml_standin_env: NvmlStandIn) -> Iterator[NvmlSensor]:
    nvml_standin_env.write([*NODE, MIG_PARENT])
    opened = NvmlSensor.open(nvml_standin_env.settings())
    yield opened
    opened.close()


def test_devices_carry_uuid_minor_and_pci_bus_id(sensor: NvmlSensor) -> None:
    devices = sensor.devices()
    assert [d.uuid for d in devices] == [A, B, C, D, MIG_PARENT.uuid]
    assert [d.minor for d in devices] == [2, 0, 3, 1, 4]
    assert devices[0].pci_bus_id == "00000000:C1:00.0"
    assert devices[0].name == "NVIDIA H100 80GB HBM3"
    assert all(d.parent_uuid is None and d.share == 1.0 for d in devices)


def test_energy_counter_follows_power_times_time(nvml_standin_env: NvmlStandIn) -> None:
    epoch = nvml_standin_env.write(NODE, epoch_s=time.time() - 100)
    sensor = NvmlSensor.open(nvml_standin_env.settings())
    before = time.time()
    reading = sensor.read([A])[A]
    after = time.time()
    sensor.close()
    assert reading.status is Status.OK
    assert reading.power_mw is None  # power is only read where the energy counter fails
    assert NODE[0].energy_mj(epoch, before) - 1 <= reading.energy_mj <= NODE[0].energy_mj(epoch, after)
    assert reading.energy_mj == pytest.approx(300 * 100 * 1000, rel=0.01)  # 300 W for 100 s


def test_unsupported_energy_counter_gives_power_only_and_is_remembered(
    nvml_standin_env: NvmlStandIn,
) -> None:
    old = FakeGpu(A, minor=0, pci_bus_id="00000000:01:00.0", power_mw=150_000)
    nvml_standin_env.write([replace(old, energy_supported=False)])
    sensor = NvmlSensor.open(nvml_standin_env.settings())
    first = sensor.read([A])[A]
    nvml_standin_env.write([old])  # the counter would work now, but NotSupported is a capability
    second = sensor.read([A])[A]
    sensor.close()
    for reading in (first, second):
        assert (reading.energy_mj, reading.power_mw) == (None, 150_000)
        assert reading.status is Status.NOT_SUPPORTED
        assert "Not Supported" in reading.reason


def test_unsupported_power_keeps_the_energy_counter(nvml_standin_env: NvmlStandIn) -> None:
    nvml_standin_env.write([FakeGpu(A, minor=0, pci_bus_id="0:1:0.0", power_supported=False)])
    sensor = NvmlSensor.open(nvml_standin_env.settings())
    reading = sensor.read([A])[A]
    sensor.close()
    assert reading.status is Status.OK
    assert reading.energy_mj is not None
    assert reading.power_mw is None


def test_counter_reset_is_visible_and_energy_counter_integrates_power(
    nvml_standin_env: NvmlStandIn,
) -> None:
    gpu = FakeGpu(A, minor=0, pci_bus_id="00000000:01:00.0", power_mw=200_000)
    nvml_standin_env.write([replace(gpu, energy_offset_mj=50_000_000)])
    sensor = NvmlSensor.open(nvml_standin_env.settings())
    counter = EnergyCounter(joules_per_unit=1e-3, wrap=None, max_power_w=1000)
    first = sensor.read([A])[A]
    assert counter.update(1000.0, first.energy_mj) is None
    nvml_standin_env.write([gpu])  # driver reload: counter restarts from zero now
    second = sensor.read([A])[A]
    assert second.energy_mj < first.energy_mj
    assert counter.update(1005.0, second.energy_mj) is None  # a reset is a gap for the counter...
    assert counter.resets == 1
    power_mw = sensor.power_mw(A)  # ...which the sampler fills by integrating power
    sensor.close()
    assert power_mw == 200_000


def test_one_failing_gpu_never_hides_the_others(sensor: NvmlSensor, nvml_standin_env: NvmlStandIn) -> None:
    lost = replace(NODE[1], energy_error=GPU_IS_LOST, power_error=GPU_IS_LOST)
    nvml_standin_env.write([NODE[0], lost, *NODE[2:]])
    readings = sensor.read([A, B])
    assert readings[A].status is Status.OK
    assert readings[B].status is Status.ERROR
    assert (readings[B].energy_mj, readings[B].power_mw) == (None, None)
    assert "GPU is lost" in readings[B].reason
    nvml_standin_env.write(NODE)  # the GPU comes back while the sampler keeps running
    assert sensor.read([B])[B].status is Status.OK


def test_read_rejects_mig_and_unknown_uuids(sensor: NvmlSensor) -> None:
    readings = sensor.read([MIG_NEW, uuid(0x99)])
    assert readings[MIG_NEW].status is Status.ERROR
    assert "parent" in readings[MIG_NEW].reason
    assert readings[uuid(0x99)].status is Status.ERROR


@pytest.mark.parametrize(("order", "expected"), [("minor_number", BY_MINOR), ("pci_bus_id", BY_PCI)])
def test_slurm_indices_follow_the_configured_order(
    nvml_standin_env: NvmlStandIn, order: str, expected: list[str]
) -> None:
    nvml_standin_env.write(NODE)
    sensor = NvmlSensor.open(nvml_standin_env.settings(slurm_index_order=order))
    devices, problems = sensor.resolve("0,2", "0,1")
    everything, _ = sensor.resolve("0,1,2,3", None)
    sensor.close()
    assert [d.uuid for d in devices] == [expected[0], expected[2]]
    assert [d.uuid for d in everything] == expected
    assert problems == []


def test_cuda_indices_are_used_when_slurm_job_gpus_is_absent(sensor: NvmlSensor) -> None:
    devices, problems = sensor.resolve(None, "1")
    assert [d.uuid for d in devices] == [BY_MINOR[1]]
    assert problems == []


def test_uuids_in_cuda_visible_devices_take_precedence(sensor: NvmlSensor) -> None:
    devices, problems = sensor.resolve("0", f"{C},{A},{C}")
    assert [d.uuid for d in devices] == [C, A]
    assert problems == []


@pytest.mark.parametrize(("mig", "share"), [(MIG_NEW, 3 / 7), (MIG_OLD, 1 / 7)])
def test_mig_slice_maps_to_parent_with_slice_share(sensor: NvmlSensor, mig: str, share: float) -> None:
    devices, problems = sensor.resolve("4", mig)
    assert problems == []
    [device] = devices
    assert (device.uuid, device.parent_uuid, device.minor) == (mig, MIG_PARENT.uuid, None)
    assert device.pci_bus_id == MIG_PARENT.pci_bus_id
    assert device.share == pytest.approx(share)


@pytest.mark.parametrize(
    ("slurm_job_gpus", "cuda", "expected", "problem"),
    [
        ("0,abc", None, [BY_MINOR[0]], "'abc' is not a GPU index"),
        ("1;id", None, [], "'1;id' is not a GPU index"),
        ("0," * 2500, None, [], "5000 characters long"),
        (",".join(["0"] * 65), None, [], "65 entries"),
        ("7", None, [], "index 7 is out of range"),
        ("-1", None, [], "is not a GPU index"),
        ("0,,1", None, BY_MINOR[:2], "'' is not a GPU index"),
        (" 0", None, [], "is not a GPU index"),
        ("0\n1", None, [], "'0\\n1' is not a GPU index"),
        ("0", "GPU-$(reboot)", [BY_MINOR[0]], "is not a GPU id"),
        ("0", uuid(0x99), [BY_MINOR[0]], "is not on this node"),
        ("0", uuid(0x99, "MIG"), [BY_MINOR[0]], "Not Found"),
        ("0", "GPU-" + "a" * 5000, [BY_MINOR[0]], "characters long"),
    ],
)
def test_untrusted_entries_become_problems(
    sensor: NvmlSensor, slurm_job_gpus: str, cuda: str | None, expected: list[str], problem: str
) -> None:
    devices, problems = sensor.resolve(slurm_job_gpus, cuda)
    assert [d.uuid for d in devices] == expected
    assert len(problems) == 1
    assert problem in problems[0]
    assert len(problems[0]) < 200


def test_nothing_allocated_is_no_problem(sensor: NvmlSensor) -> None:
    assert sensor.resolve(None, None) == ([], [])
    assert sensor.resolve("", "") == ([], [])


def test_config_next_to_the_library_is_used_without_the_environment(
    nvml_standin_env: NvmlStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    beside = nvml_standin_env.library.with_name(CONFIG_NAME)
    monkeypatch.delenv(CONFIG_ENV)
    nvml_standin_env.write(NODE)  # the per-test file, now unused
    try:
        write_config(beside, NODE[:1])
        sensor = NvmlSensor.open(nvml_standin_env.settings())
        assert [d.uuid for d in sensor.devices()] == [A]
        sensor.close()
    finally:
        beside.unlink()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"enabled": False}, "disabled"),
        ({"library": Path("/nonexistent/libnvidia-ml.so.1")}, "does not exist"),
        ({"library": Path(__file__)}, "cannot load"),
    ],
)
def test_unavailable_by_configuration(
    nvml_standin_env: NvmlStandIn, changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(SensorUnavailable, match=reason) as caught:
        NvmlSensor.open(nvml_standin_env.settings(**changes))
    assert caught.value.status is (Status.ABSENT if reason == "disabled" else Status.ERROR)


def test_unavailable_when_init_fails_or_no_gpus(nvml_standin_env: NvmlStandIn) -> None:
    with pytest.raises(SensorUnavailable, match="initialisation failed: Driver Not Loaded") as failed:
        NvmlSensor.open(nvml_standin_env.settings())  # no config file: no driver
    assert failed.value.status is Status.ERROR
    nvml_standin_env.write([])
    with pytest.raises(SensorUnavailable, match="no usable GPUs") as none:
        NvmlSensor.open(nvml_standin_env.settings())
    assert none.value.status is Status.ABSENT


def test_unavailable_without_the_library(
    nvml_standin_env: NvmlStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pynvml

    def missing() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", missing)
    with pytest.raises(SensorUnavailable) as caught:
        NvmlSensor.open(nvml_standin_env.settings(library=None))
    assert str(caught.value) == NO_LIBRARY
    assert caught.value.status is Status.ABSENT


def test_probe_lists_each_gpu_with_its_energy_source(sensor: NvmlSensor) -> None:
    probe = sensor.probe()
    assert (probe.status, probe.reason) == (Status.OK, "5 GPU(s)")
    assert [f.name for f in probe.findings] == [f"gpu {n}" for n in range(5)]
    assert probe.findings[0].detail.startswith(f"{A} ")


def test_close_twice_is_harmless(sensor: NvmlSensor) -> None:
    sensor.close()
    sensor.close()


def test_importing_the_sensor_does_not_import_pynvml() -> None:
    code = "import sys, slurm_plugin.sensors.nvml; sys.exit('pynvml' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


def test_stand_in_charges_the_configured_cpu_per_call_and_counts_calls(
    nvml_standin_env: NvmlStandIn, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    costs = {ENERGY_CALL: 2000, POWER_CALL: 0}
    write_config(nvml_standin_env.config, NODE, costs=costs, calls_file=calls)
    sensor = NvmlSensor.open(nvml_standin_env.settings())
    try:
        before, cpu0 = call_counts(calls), time.thread_time()
        for _ in range(5):
            sensor.read([A])
        cpu_s = time.thread_time() - cpu0
        assert sensor.power_mw(A) == 300_000
        after = call_counts(calls)
    finally:
        sensor.close()
    assert after[ENERGY_CALL] - before.get(ENERGY_CALL, 0) == 5
    assert after[POWER_CALL] - before.get(POWER_CALL, 0) == 1
    assert cpu_s >= 5 * 2000e-6  # a busy wait on the thread's CPU clock: never less than configured


def test_utilisation_and_memory_follow_the_gpus_load_file_while_its_process_lives(
    nvml_standin_env: NvmlStandIn, tmp_path: Path
) -> None:
    load_dir = tmp_path / "load"
    load_dir.mkdir()
    gpu = FakeGpu(A, minor=7, pci_bus_id="00000000:01:00.0")
    write_config(nvml_standin_env.config, [gpu], load_dir=load_dir)
    sensor = NvmlSensor.open(nvml_standin_env.settings())
    try:
        assert sensor.use(A) == GpuUse(0, 0)  # no load file: idle
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            (load_dir / "7").write_text(load_line(88, worker.pid, 4096))
            assert sensor.use(A) == GpuUse(88, 4096 * 2**20)
        finally:
            worker.kill()
            worker.wait()
        assert sensor.use(A) == GpuUse(0, 0)  # its process gone: idle again
    finally:
        sensor.close()


def test_unsupported_utilisation_is_not_asked_again(nvml_standin_env: NvmlStandIn) -> None:
    gpu = FakeGpu(A, minor=0, pci_bus_id="00000000:01:00.0", util_pct=50, mem_used_mib=10)
    nvml_standin_env.write([replace(gpu, util_error=NOT_SUPPORTED)])
    sensor = NvmlSensor.open(nvml_standin_env.settings())
    try:
        assert sensor.use(A) == GpuUse(None, None)
        nvml_standin_env.write([gpu])  # would answer now, but NotSupported is a capability
        assert sensor.use(A) == GpuUse(None, 10 * 2**20)
    finally:
        sensor.close()
