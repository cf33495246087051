"""Build and program the NVML stand-in (`nvml_standin.c`): a fake libnvidia-ml.so.1 that the real
pynvml loads, so the NVML sensor is tested through the real bindings on machines without a GPU.

The library reads `$NVML_STANDIN_CONFIG`, else `nvml-standin.conf` next to itself, and re-reads it
when it changes. Its energy counter is `energy_offset_mj + power_mw × (now − epoch_s)`, so changing
`power_mw` under the same epoch rescales the whole history; to change power without a jump, set
`energy_offset_mj` to the counter's current value and `epoch_s` to now.

`costs` models what each call costs on real hardware (`H200_COSTS_US`: the energy counter burns
3.85 ms of CPU in the driver, power 10 µs), and `calls_file` counts the calls each function gets.

Utilisation follows the GPU's load: with `load_dir` set, a job that keeps GPU `minor` busy writes
"<util %> <pid> [<memory MiB>]" to `load_dir/<minor>` (`load_line`); the GPU reports that while the pid
lives and is idle (0 %) otherwise. Without `load_dir`, each GPU's `util_pct` and `mem_used_mib` apply.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).with_name("nvml_standin.c")
LIBRARY_NAME = "libnvidia-ml.so.1"
CONFIG_NAME = "nvml-standin.conf"
CONFIG_ENV = "NVML_STANDIN_CONFIG"
NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED
GPU_IS_LOST = 15  # NVML_ERROR_GPU_IS_LOST
DRIVER_NOT_LOADED = 9  # NVML_ERROR_DRIVER_NOT_LOADED: what nvmlInit returns before the driver is up
ENERGY_CALL = "nvmlDeviceGetTotalEnergyConsumption"
POWER_CALL = "nvmlDeviceGetPowerUsage"
UTIL_CALL = "nvmlDeviceGetUtilizationRates"
MEMORY_CALL = "nvmlDeviceGetMemoryInfo"
# CPU per call measured on an H200 (driver 580, docs/testing.md): the counter is the expensive one. The
# utilisation and memory reads are not measured yet (bench/gpu_costs.py measures them where a GPU is
# lent); they are RM queries like the power reading, modelled at twice its cost (docs/benchmarks.md).
H200_COSTS_US = {ENERGY_CALL: 3850, POWER_CALL: 10, UTIL_CALL: 20, MEMORY_CALL: 20}
_CALL_SLOT = struct.Struct("56sQ")  # call_slot_t in nvml_standin.c


class BuildError(RuntimeError):
    """The C compiler is missing or failed; the message carries its output."""


@dataclass(frozen=True)
class FakeMig:
    """One MIG slice; its energy and power come from the parent GPU, as on real hardware."""

    uuid: str
    slices: int = 1
    name: str = ""


@dataclass(frozen=True)
class FakeGpu:
    """One programmed GPU. `*_error` is a raw NVML return code that overrides `*_supported`."""

    uuid: str
    minor: int
    pci_bus_id: str
    name: str = "NVIDIA H100 80GB HBM3"
    power_mw: int = 100_000
    energy_supported: bool = True
    energy_offset_mj: int = 0
    energy_error: int = 0
    power_supported: bool = True
    power_error: int = 0
    max_mig: int = 0
    migs: tuple[FakeMig, ...] = field(default_factory=tuple)
    util_pct: int = 0
    mem_used_mib: int = 0
    util_error: int = 0  # what the utilisation and memory reads return (e.g. NOT_SUPPORTED)

    def energy_mj(self, epoch_s: float, now_s: float) -> int:
        """The counter value the library reports at `now_s` (for assertions)."""
        return self.energy_offset_mj + int(self.power_mw * max(0.0, now_s - epoch_s))


def _ret(supported: bool, error: int) -> int:
    return error or (0 if supported else NOT_SUPPORTED)


def render(
    gpus: list[FakeGpu],
    epoch_s: float,
    driver_version: str = "550.54.15",
    costs: dict[str, int] | None = None,
    calls_file: Path | None = None,
    init_ret: int = 0,
    load_dir: Path | None = None,
) -> str:
    """The config file text: global keys, then one `[gpu]` block per device, `[mig]` after it.
    `init_ret` is what nvmlInit returns (a raw NVML code; 0 succeeds)."""
    lines = ["# nvml stand-in state (testbed/nvml_standin.py)", f"epoch_s={epoch_s:.6f}"]
    lines.append(f"driver_version={driver_version}")
    lines += [f"init_ret={init_ret}"] if init_ret else []
    lines += [f"load_dir={load_dir}"] if load_dir else []
    lines += [f"cost_us.{function}={cost_us}" for function, cost_us in (costs or {}).items()]
    lines += [f"calls_file={calls_file}"] if calls_file else []
    for gpu in gpus:
        lines += [
            "[gpu]",
            f"uuid={gpu.uuid}",
            f"name={gpu.name}",
            f"minor={gpu.minor}",
            f"pci_bus_id={gpu.pci_bus_id}",
            f"power_mw={gpu.power_mw}",
            f"energy_offset_mj={gpu.energy_offset_mj}",
            f"energy_ret={_ret(gpu.energy_supported, gpu.energy_error)}",
            f"power_ret={_ret(gpu.power_supported, gpu.power_error)}",
            f"max_mig={gpu.max_mig}",
            f"util_pct={gpu.util_pct}",
            f"mem_used_mib={gpu.mem_used_mib}",
            f"util_ret={gpu.util_error}",
        ]
        for mig in gpu.migs:
            lines += ["[mig]", f"uuid={mig.uuid}", f"slices={mig.slices}"]
            lines += [f"name={mig.name}"] if mig.name else []
    return "\n".join(lines) + "\n"


def write_config(
    path: Path,
    gpus: list[FakeGpu],
    epoch_s: float | None = None,
    costs: dict[str, int] | None = None,
    calls_file: Path | None = None,
    init_ret: int = 0,
    load_dir: Path | None = None,
) -> float:
    """Atomically replace the config (temp file + rename); return the epoch written."""
    epoch = time.time() if epoch_s is None else epoch_s
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(
            render(gpus, epoch, costs=costs, calls_file=calls_file, init_ret=init_ret, load_dir=load_dir)
        )
    Path(tmp).chmod(0o644)
    # The library notices changes by inode, size and mtime; a freed inode can be reused and the
    # kernel's coarse clock can repeat an mtime, so make the mtime strictly newer.
    previous_ns = path.stat().st_mtime_ns if path.exists() else 0
    mtime_ns = max(time.time_ns(), previous_ns + 1_000)
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    Path(tmp).replace(path)
    return epoch


def load_line(util_pct: int, pid: int, mem_mib: int | None = None) -> str:
    """What a busy job writes to `load_dir/<minor>`: the GPU is that busy while `pid` lives."""
    return f"{util_pct} {pid}" + (f" {mem_mib}" if mem_mib is not None else "") + "\n"


def call_counts(calls_file: Path) -> dict[str, int]:
    """Calls per NVML function so far, from the library's shared count file (any process's calls)."""
    try:
        data = calls_file.read_bytes()
    except FileNotFoundError:
        return {}
    counts = {}
    for name, count in _CALL_SLOT.iter_unpack(data):
        if name.strip(b"\0"):
            counts[name.rstrip(b"\0").decode()] = count
    return counts


def build(dest_dir: Path) -> Path:
    """Compile the stand-in into dest_dir/libnvidia-ml.so.1 unless it was built from this very source:
    checkouts of different branches share the test bed's scratch folder, so an mtime would not tell."""
    target = dest_dir / LIBRARY_NAME
    stamp = dest_dir / f".{LIBRARY_NAME}.sha256"
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    if target.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == digest:
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise BuildError("no C compiler found (set CC or install gcc)")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".{LIBRARY_NAME}.{os.getpid()}.tmp"
    command = [compiler, "-O2", "-Wall", "-Wextra", "-fPIC", "-shared"]
    command += [f"-Wl,-soname,{LIBRARY_NAME}", "-o", str(tmp), str(SOURCE), "-ldl", "-lpthread"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed:\n{result.stderr}")
    tmp.replace(target)
    stamp.write_text(digest, encoding="utf-8")
    return target
