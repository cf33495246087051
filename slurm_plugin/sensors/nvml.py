"""NVML sensor: GPU energy counters and power, and which GPUs a Slurm job holds.

Power and energy exist only for physical GPUs (a MIG slice reports its parent's), so readings are
keyed by physical UUID and a MIG slice carries its parent and slice share. pynvml is imported only
in `NvmlSensor.open`, because the long-running node agent loads this module on CPU nodes too.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from slurm_plugin.sensors import SensorUnavailable, Status  # not from .base: see sensors/__init__.py
from slurm_plugin.sensors.base import Finding, Probe

if TYPE_CHECKING:
    from pathlib import Path

    from slurm_plugin import config

MAX_ENV_CHARS = 4096  # a 64-GPU node's list of UUIDs fits in well under this
MAX_ENTRIES = 64
NOT_SUPPORTED = "Not Supported"  # NVML_ERROR_NOT_SUPPORTED: a capability, not a transient failure
NO_LIBRARY = "nvml: libnvidia-ml.so.1 not found (normal on a node without NVIDIA GPUs)"
_HEX_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_INDEX = re.compile(r"[0-9]{1,4}")
_GPU_UUID = re.compile(rf"GPU-{_HEX_UUID}")
# MIG-<uuid> (R470+ drivers) or MIG-GPU-<uuid>/<gpu instance>/<compute instance> (R450).
_MIG_UUID = re.compile(rf"MIG-(?:{_HEX_UUID}|GPU-{_HEX_UUID}/[0-9]{{1,3}}/[0-9]{{1,3}})")


@dataclass(frozen=True)
class GpuDevice:
    """A GPU or MIG slice; for a slice, energy is read from `parent_uuid` and scaled by `share`."""

    uuid: str
    name: str
    minor: int | None
    pci_bus_id: str
    parent_uuid: str | None = None
    share: float = 1.0


# Not frozen: built on every tick, and a frozen dataclass sets each field through object.__setattr__.
@dataclass(slots=True)
class GpuReading:
    """Raw cumulative energy (mJ) and power (mW) of one physical GPU; deltas live in counters."""

    uuid: str
    energy_mj: int | None
    power_mw: int | None
    status: Status = Status.OK
    reason: str = ""


class GpuUse(NamedTuple):
    """How busy a physical GPU was (percent of the driver's last sample period, 1/6 s to 1 s, in which
    a kernel ran) and the device memory in use; either is None where the GPU does not say."""

    util_pct: int | None
    mem_used_b: int | None


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _pci_key(bus_id: str) -> tuple[int, ...]:
    """Sort key for "DDDDDDDD:BB:DD.F"; NVML pads the domain to 8 or 4 digits, so compare numbers."""
    try:
        domain, bus, rest = bus_id.split(":")
        device, function = rest.split(".")
        return tuple(int(part, 16) for part in (domain, bus, device, function))
    except ValueError:
        return (1 << 32,)


def _show(entry: str) -> str:
    """Untrusted text made safe for one log line."""
    return repr(entry[:40] + ("…" if len(entry) > 40 else ""))


def _split(name: str, value: str | None, problems: list[str]) -> list[str]:
    """Comma-separated entries of an environment variable, bounded in length and count."""
    if not value:
        return []
    if len(value) > MAX_ENV_CHARS:
        problems.append(f"{name} is {len(value)} characters long (limit {MAX_ENV_CHARS}); ignored")
        return []
    entries = value.split(",")
    if len(entries) > MAX_ENTRIES:
        problems.append(f"{name} has {len(entries)} entries (limit {MAX_ENTRIES}); ignored")
        return []
    return entries


class NvmlSensor:
    """An initialised NVML session with the node's GPUs enumerated once at open."""

    name = "nvml"

    def __init__(self, nvml: Any, settings: config.Nvml):
        self._nvml = nvml
        self._settings = settings
        self._handles: dict[str, Any] = {}
        self._devices: list[GpuDevice] = []
        self._no_energy: set[str] = set()  # UUIDs whose energy counter is NotSupported
        self._no_util: set[str] = set()  # UUIDs whose utilisation is NotSupported (MIG mode)
        self._open = True
        self.problems: list[str] = []  # GPUs that could not be enumerated

    @classmethod
    def open(cls, settings: config.Nvml) -> NvmlSensor:
        """Initialise NVML; raise SensorUnavailable (normal on CPU nodes) with the reason."""
        if not settings.enabled:
            raise SensorUnavailable("nvml: disabled in the configuration (nvml.enabled: false)")
        if settings.library is not None:
            _preload(settings.library)
        try:
            import pynvml  # deferred: an 8,000-line module, and absent on some nodes
        except ImportError:
            raise SensorUnavailable("nvml: the nvidia-ml-py package is not installed") from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            raise SensorUnavailable(NO_LIBRARY) from None
        except pynvml.NVMLError as exc:
            raise SensorUnavailable(f"nvml: initialisation failed: {exc}", Status.ERROR) from None
        sensor = cls(pynvml, settings)
        try:
            sensor._enumerate()
        except pynvml.NVMLError as exc:
            sensor.close()
            raise SensorUnavailable(f"nvml: cannot count GPUs: {exc}", Status.ERROR) from None
        if not sensor._devices:
            sensor.close()
            status = Status.ERROR if sensor.problems else Status.ABSENT
            raise SensorUnavailable(f"nvml: no usable GPUs ({'; '.join(sensor.problems) or 0})", status)
        return sensor

    def _enumerate(self) -> None:
        nvml = self._nvml
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                device = self._describe(handle)
            except nvml.NVMLError as exc:
                self.problems.append(f"GPU at NVML index {index}: {exc}")
                continue
            self._handles[device.uuid] = handle
            self._devices.append(device)

    def _describe(self, handle: Any) -> GpuDevice:
        nvml = self._nvml
        try:
            minor: int | None = nvml.nvmlDeviceGetMinorNumber(handle)
        except nvml.NVMLError:
            minor = None
        return GpuDevice(
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            name=_text(nvml.nvmlDeviceGetName(handle)),
            minor=minor,
            pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
        )

    def devices(self) -> list[GpuDevice]:
        """Whole GPUs on the node, in NVML enumeration order."""
        return list(self._devices)

    def resolve(
        self, slurm_job_gpus: str | None, cuda_visible_devices: str | None
    ) -> tuple[list[GpuDevice], list[str]]:
        """The job's GPUs and any problems; UUIDs in CUDA_VISIBLE_DEVICES win over Slurm indices."""
        problems: list[str] = []
        by_id: list[GpuDevice] = []
        cuda_indices: list[str] = []
        for entry in _split("CUDA_VISIBLE_DEVICES", cuda_visible_devices, problems):
            if _GPU_UUID.fullmatch(entry) or _MIG_UUID.fullmatch(entry):
                by_id += self._by_uuid(entry, problems)
            elif _INDEX.fullmatch(entry):
                cuda_indices.append(entry)
            else:
                problems.append(f"CUDA_VISIBLE_DEVICES entry {_show(entry)} is not a GPU id")
        if by_id:
            found = by_id
        elif slurm_job_gpus:
            entries = _split("SLURM_JOB_GPUS", slurm_job_gpus, problems)
            found = self._by_index("SLURM_JOB_GPUS", entries, problems)
        else:  # the prolog's CUDA_VISIBLE_DEVICES holds the same GRES indices (gres_common.c)
            found = self._by_index("CUDA_VISIBLE_DEVICES", cuda_indices, problems)
        return list(dict.fromkeys(found)), problems

    def _slurm_order(self, problems: list[str]) -> list[GpuDevice]:
        """GPUs in Slurm's GRES index order: gres.conf File= lines follow /dev/nvidiaN minors,
        AutoDetect=nvml follows PCI bus ids (slurm gres.shtml; jobstats "GPU Ownership Caveats")."""
        if self._settings.slurm_index_order == "minor_number":
            if all(device.minor is not None for device in self._devices):
                return sorted(self._devices, key=lambda device: device.minor or 0)
            problems.append("some GPUs have no minor number; Slurm indices mapped by PCI bus id")
        return sorted(self._devices, key=lambda device: _pci_key(device.pci_bus_id))

    def _by_index(self, name: str, entries: list[str], problems: list[str]) -> list[GpuDevice]:
        if not entries:
            return []
        ordered = self._slurm_order(problems)
        found: list[GpuDevice] = []
        for entry in entries:
            if not _INDEX.fullmatch(entry):
                problems.append(f"{name} entry {_show(entry)} is not a GPU index")
            elif int(entry) >= len(ordered):
                problems.append(f"{name} index {entry} is out of range ({len(ordered)} GPUs)")
            else:
                found.append(ordered[int(entry)])
        return found

    def _by_uuid(self, uuid: str, problems: list[str]) -> list[GpuDevice]:
        for device in self._devices:
            if device.uuid == uuid:
                return [device]
        if uuid.startswith("GPU-"):
            problems.append(f"GPU {uuid} is not on this node")
            return []
        try:
            return [self._mig_device(uuid, problems)]
        except self._nvml.NVMLError as exc:
            problems.append(f"MIG device {uuid}: {exc}")
            return []

    def _mig_device(self, uuid: str, problems: list[str]) -> GpuDevice:
        """A MIG slice as a share of its parent: gpuInstanceSliceCount / max MIG devices."""
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
        parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
        parent_device = self._describe(parent)
        slices = nvml.nvmlDeviceGetAttributes_v2(handle).gpuInstanceSliceCount
        max_slices = nvml.nvmlDeviceGetMaxMigDeviceCount(parent)
        if slices <= 0 or max_slices <= 0:
            problems.append(f"MIG device {uuid}: {slices} of {max_slices} slices; counted whole")
        share = min(1.0, slices / max_slices) if slices > 0 and max_slices > 0 else 1.0
        name = _text(nvml.nvmlDeviceGetName(handle))
        return GpuDevice(uuid, name, None, parent_device.pci_bus_id, parent_device.uuid, share)

    def read(self, uuids: Iterable[str]) -> dict[str, GpuReading]:
        """One reading per physical GPU UUID; a failing GPU gets an ERROR reading of its own."""
        return {uuid: self._read_one(uuid) for uuid in uuids}

    def _read_one(self, uuid: str) -> GpuReading:
        if uuid.startswith("MIG-"):
            return GpuReading(uuid, None, None, Status.ERROR, "MIG slice: read its parent GPU")
        try:
            handle = self._handle(uuid)
        except self._nvml.NVMLError as exc:
            return GpuReading(uuid, None, None, Status.ERROR, f"no handle: {exc}")
        if uuid in self._no_energy:
            return self._without_energy(uuid, handle, NOT_SUPPORTED)
        energy_mj, problem = self._call(self._nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        if energy_mj is not None:
            return GpuReading(uuid, energy_mj, None)
        if problem == NOT_SUPPORTED:
            self._no_energy.add(uuid)  # a capability (pre-Volta), not a transient failure
        return self._without_energy(uuid, handle, problem)

    def _without_energy(self, uuid: str, handle: Any, energy_problem: str) -> GpuReading:
        """Power, which is only needed to integrate where the energy counter fails, and why it failed."""
        power_mw, power_problem = self._call(self._nvml.nvmlDeviceGetPowerUsage, handle)
        problems = (("energy", energy_problem), ("power", power_problem))
        reason = "; ".join(f"{what}: {problem}" for what, problem in problems if problem)
        if uuid in self._no_energy and (power_mw is not None or power_problem == NOT_SUPPORTED):
            return GpuReading(uuid, None, power_mw, Status.NOT_SUPPORTED, reason)
        self._handles.pop(uuid, None)  # maybe stale (GPU lost, driver reloaded): look up again
        return GpuReading(uuid, None, power_mw, Status.ERROR, reason)

    def power_mw(self, uuid: str) -> int | None:
        """Current power of a physical GPU, or None; used to bridge an interval the counter lost."""
        try:
            value, _problem = self._call(self._nvml.nvmlDeviceGetPowerUsage, self._handle(uuid))
        except self._nvml.NVMLError:
            return None
        return value

    def use(self, uuid: str) -> GpuUse:
        """Utilisation and memory in use: two of NVML's cheapest reads (docs/benchmarks.md), taken with
        the power every tick. A GPU that does not support one is not asked again."""
        try:
            handle = self._handle(uuid)
        except self._nvml.NVMLError:
            return GpuUse(None, None)
        util = memory = None
        # Any other NVML error is transient: no reading this tick, the next one asks again.
        if uuid not in self._no_util:
            with contextlib.suppress(self._nvml.NVMLError):
                try:
                    util = int(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                except self._nvml.NVMLError_NotSupported:
                    self._no_util.add(uuid)
        with contextlib.suppress(self._nvml.NVMLError):
            memory = int(self._nvml.nvmlDeviceGetMemoryInfo(handle).used)
        return GpuUse(util, memory)

    def _handle(self, uuid: str) -> Any:
        handle = self._handles.get(uuid)
        if handle is None:
            handle = self._handles[uuid] = self._nvml.nvmlDeviceGetHandleByUUID(uuid)
        return handle

    def _call(self, function: Any, handle: Any) -> tuple[int | None, str]:
        try:
            return int(function(handle)), ""
        except self._nvml.NVMLError_NotSupported:
            return None, NOT_SUPPORTED
        except self._nvml.NVMLError as exc:
            return None, str(exc)

    def probe(self) -> Probe:
        """The GPUs found and whether each has an energy counter, one finding per GPU."""
        devices = self.devices()
        readings = self.read([d.uuid for d in devices])
        findings = tuple(_finding(n, device, readings.get(device.uuid)) for n, device in enumerate(devices))
        return Probe(Status.OK, f"{len(devices)} GPU(s)", findings)

    def close(self) -> None:
        """End the NVML session; safe to call twice."""
        if self._open:
            self._open = False
            self._handles.clear()
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()


def _finding(index: int, device: GpuDevice, reading: GpuReading | None) -> Finding:
    energy = "energy counter" if reading and reading.energy_mj is not None else "power only"
    state = reading.status if reading else Status.ERROR
    detail = f"{device.uuid} {device.name} minor={device.minor} pci={device.pci_bus_id} {energy} ({state})"
    return Finding(f"gpu {index}", state, detail)


def _preload(library: Path) -> None:
    """Load the library by path with RTLD_GLOBAL so pynvml's CDLL("libnvidia-ml.so.1") reuses it
    (matched by its soname); this is how the test bed reaches slurmd's scrubbed environment."""
    if not library.is_file():
        raise SensorUnavailable(f"nvml: nvml.library {library} does not exist", Status.ERROR)
    try:
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise SensorUnavailable(f"nvml: cannot load nvml.library {library}: {exc}", Status.ERROR) from None
