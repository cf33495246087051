"""Check the NVML path on a real NVIDIA GPU: `python3 -m bench.gpu_check [--out DIR]`.

Not a test (CI has no GPU) but the one prepared script to run where a GPU machine is lent. It times
each NVML call jobcarbon uses (utilisation and memory in use among them, whose cost the stand-in only
models: `nvml_standin.H200_COSTS_US`) (and `nvmlDeviceGetFieldValues`, which could fetch counter and power in
one call), then runs the real prolog, agent and epilog with the node's real /sys, /proc and
libnvidia-ml, a simulated cgroup v1 tree per job, and GPU loads of known shape: a steady job and a
bursty one at `interval_s: 1`, and an idle job at `interval_s: 10` long enough to hold a periodic
counter read. Beside each job it reads the GPU's energy counter itself and integrates power at 10 Hz,
so the record's GPU joules can be compared with two independent figures, and it reports the agent's
CPU per sample and the hooks' wall times. About 4 minutes. Results: DIR/gpu_check.json and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import procstats
from slurm_plugin import config
from slurm_plugin.sensors.nvml import NvmlSensor

REPO = Path(__file__).resolve().parent.parent
NODE = "gpunode"
JOB_ID = 4242
ENERGY_FIELD, POWER_FIELD = 83, 186  # NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, NVML_FI_DEV_POWER_INSTANT
# (name, sampler interval, phases): each a job through the real hooks.
JOBS = (
    ("steady_1s", 1, (("idle", 3.0), ("full", 20.0), ("idle", 3.0))),
    ("bursty_1s", 1, (("idle", 2.0), ("burst", 20.0), ("duty", 10.0), ("idle", 2.0))),
    # A periodic counter read (nvml.counter_interval_s) falls inside: its cost is in the average.
    ("idle_10s", 10, (("idle", config.Nvml().counter_interval_s + 10.0),)),
)
LOAD = """
import sys, time
phase, seconds = sys.argv[1], float(sys.argv[2])
try:
    import torch
except ImportError:  # a dry run against the NVML stand-in: its power is programmed
    time.sleep(seconds)
    raise SystemExit(0)
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.monotonic() + seconds
while time.monotonic() < end:
    if phase == "duty" and int(time.monotonic() * 2) % 2:  # 0.5 s on, 0.5 s off
        time.sleep(0.01)
        continue
    if phase == "burst" and time.monotonic() % 0.5 > 0.15:  # 0.15 s bursts every 0.5 s
        time.sleep(0.005)
        continue
    for _ in range(8):
        a @ a
    torch.cuda.synchronize()
"""


class PowerIntegrator(threading.Thread):
    """Integrates nvmlDeviceGetPowerUsage at 10 Hz (trapezoids) while the job runs; keeps the readings
    (wall-clock time, W) so the integral can also be taken over the record's own window."""

    def __init__(self, nvml: Any, handle: Any):
        super().__init__(daemon=True)
        self._nvml, self._handle = nvml, handle
        self.readings: list[tuple[float, float]] = [(time.time(), self._watts())]
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.1):
            self.readings.append((time.time(), self._watts()))

    def joules(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The trapezoids' energy between `start` and `end` (clipped; power held within a step)."""
        total = 0.0
        for (t0, w0), (t1, w1) in zip(self.readings, self.readings[1:], strict=False):
            inside = min(t1, end) - max(t0, start)
            if inside > 0:
                total += inside * (w0 + w1) / 2
        return total

    def _watts(self) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _facts() -> dict[str, Any]:
    try:
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        smi = "nvidia-smi not found"
    import pynvml

    return {
        "nvidia_smi": smi.strip(),
        "driver": pynvml.nvmlSystemGetDriverVersion(),
        "nvml_py": getattr(pynvml, "__version__", "?"),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "powercap": sorted(p.name for p in Path("/sys/class/powercap").glob("*"))
        if Path("/sys/class/powercap").is_dir()
        else None,
    }


def _sensor_checks(sensor: NvmlSensor) -> dict[str, Any]:
    """Enumeration, both ways of naming the job's GPU, a bad id, and the cost of one reading."""
    devices = sensor.devices()
    first = devices[0]
    by_index = sensor.resolve("0", "0")
    by_uuid = sensor.resolve(None, first.uuid)
    bogus = sensor.resolve(None, "GPU-00000000-0000-0000-0000-000000000000")
    reading = sensor.read([first.uuid])[first.uuid]
    nvml = sensor._nvml
    handle = nvml.nvmlDeviceGetHandleByUUID(first.uuid)
    costs = {
        "sensor_read_one_gpu": lambda: sensor.read([first.uuid]),
        "sensor_power_one_gpu": lambda: sensor.power_mw(first.uuid),
        "sensor_use_one_gpu": lambda: sensor.use(first.uuid),
        "nvmlDeviceGetUtilizationRates": lambda: nvml.nvmlDeviceGetUtilizationRates(handle),
        "nvmlDeviceGetMemoryInfo": lambda: nvml.nvmlDeviceGetMemoryInfo(handle),
        "nvmlDeviceGetTotalEnergyConsumption": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        "nvmlDeviceGetPowerUsage": lambda: nvml.nvmlDeviceGetPowerUsage(handle),
        "nvmlDeviceGetHandleByUUID": lambda: nvml.nvmlDeviceGetHandleByUUID(first.uuid),
        "nvmlDeviceGetFieldValues_energy_and_power": lambda: nvml.nvmlDeviceGetFieldValues(
            handle, [ENERGY_FIELD, POWER_FIELD]
        ),
        "nvmlDeviceGetFieldValues_power": lambda: nvml.nvmlDeviceGetFieldValues(handle, [POWER_FIELD]),
    }
    return {
        "devices": [vars(device) for device in devices],
        "resolve_index_0": [d.uuid for d in by_index[0]] + by_index[1],
        "resolve_uuid": [d.uuid for d in by_uuid[0]] + by_uuid[1],
        "resolve_bogus": [d.uuid for d in bogus[0]] + bogus[1],
        "first_reading": {
            "status": str(reading.status),
            "energy_mj": reading.energy_mj,
            "reason": reading.reason,
        },
        "cost_us": {name: _cost_us(call) for name, call in costs.items()},
        "field_values": _field_values(nvml, handle),
    }


def _field_values(nvml: Any, handle: Any) -> dict[str, Any]:
    """What nvmlDeviceGetFieldValues returns for the counter and power, beside the plain calls."""
    try:
        energy, power = nvml.nvmlDeviceGetFieldValues(handle, [ENERGY_FIELD, POWER_FIELD])
    except nvml.NVMLError as exc:
        return {"error": str(exc)}
    return {
        "energy": {"return": energy.nvmlReturn, "mj": energy.value.ullVal},
        "power": {"return": power.nvmlReturn, "mw": power.value.uiVal},
        "plain_calls": {
            "mj": nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
            "mw": nvml.nvmlDeviceGetPowerUsage(handle),
        },
    }


def _cost_us(call: Any, runs: int = 200) -> dict[str, float] | str:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        for _ in range(runs):
            call()
    except Exception as exc:  # e.g. a field this driver does not serve: report it, measure the rest
        return f"{type(exc).__name__}: {exc}"
    return {
        "cpu": round((time.process_time() - cpu0) / runs * 1e6, 1),
        "wall": round((time.perf_counter() - wall0) / runs * 1e6, 1),
    }


def _agent_cpu_s(spool: Path) -> float:
    """CPU seconds the node agent has run so far (schedstat, ns: a 10 s tick costs well under 10 ms)."""
    from slurm_plugin.node.agent_client import request

    pid = int(request(spool / "agent.sock", {"op": "status"}, 2.0)["pid"])
    return procstats.runtime_s(pid)


def _node(root: Path, library: Path | None, interval_s: int) -> tuple[Path, dict[str, str]]:
    """Config with the real /sys and /proc, a simulated cgroup v1 tree and scratch spool."""
    cgroupfs = root / "cgroup"
    for controller, files in {
        "cpuacct": {"cpuacct.usage": "0"},
        "memory": {"memory.usage_in_bytes": str(1 << 30), "memory.stat": "total_inactive_file 0\n"},
        "cpuset": {"cpuset.cpus": "0-3"},
    }.items():
        job = cgroupfs / controller / f"slurm_{NODE}" / "uid_0" / f"job_{JOB_ID}"
        job.mkdir(parents=True)
        for name, text in files.items():
            (job / name).write_text(text)
    path = root / "config.yaml"
    path.write_text(
        f"cluster: gpucheck\npaths:\n  cgroupfs: {cgroupfs}\n  spool: {root / 'spool'}\n"
        f"  outbox: {root / 'outbox'}\n  log_file: {root / 'jobcarbon.log'}\n"
        f"sampler:\n  interval_s: {interval_s}\n  journal_fsync: false\ncgroup:\n  version: v1\n"
        f"database:\n  url: sqlite:///{root / 'jobcarbon.db'}\n"
        + (f"nvml:\n  library: {library}\n" if library else "")
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SLURM_JOB_ID": str(JOB_ID),
        "SLURM_JOB_UID": "0",
        "SLURM_JOB_GID": "0",
        "SLURM_JOB_USER": "root",
        "SLURM_JOB_ACCOUNT": "gpucheck",
        "SLURM_JOB_PARTITION": "gpu",
        "SLURMD_NODENAME": NODE,
        "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
        "SLURM_JOB_GPUS": "0",
        "CUDA_VISIBLE_DEVICES": "0",
        "JOBCARBON_PYTHON": sys.executable,
        "JOBCARBON_CONFIG": str(path),
        "JOBCARBON_PYTHONPATH": str(REPO),
        "JOBCARBON_RUNDIR": str(root / "run"),
    }
    return path, env


def _hook(name: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([REPO / name / f"jobcarbon-{name}"], env=env, check=True, timeout=60)
    return round((time.perf_counter() - start) * 1000, 1)


def _load(phase: str, seconds: float) -> None:
    subprocess.run([sys.executable, "-c", LOAD, phase, str(seconds)], check=True, timeout=seconds + 60)


def _job(
    sensor: NvmlSensor, root: Path, uuid: str, library: Path | None, interval_s: int, phases: Any
) -> dict[str, Any]:
    """One job through the real hooks; the script's own counter and 10 Hz power integral beside it."""
    nvml = sensor._nvml
    handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
    _config, env = _node(root, library, interval_s)
    doctor = subprocess.run(
        [sys.executable, "-c", 'from slurm_plugin.cli.main import main; main(["doctor"])'],
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    integrator = PowerIntegrator(nvml, handle)
    integrator.start()
    counter_start = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    prolog_at = counted_from = time.time()
    prolog_ms = _hook("prolog", env)
    job_start = prolog_at + prolog_ms / 2000  # the agent notes the start while the prolog waits
    time.sleep(1)
    agent_cpu0, wall0 = _agent_cpu_s(root / "spool"), time.monotonic()
    for phase, seconds in phases:
        if phase == "idle":
            time.sleep(seconds)
        else:
            _load(phase, seconds)
    agent_cpu_s, wall_s = _agent_cpu_s(root / "spool") - agent_cpu0, time.monotonic() - wall0
    epilog_ms = _hook("epilog", env)
    counter_j = (nvml.nvmlDeviceGetTotalEnergyConsumption(handle) - counter_start) / 1000
    counted = (counted_from, time.time())
    integrator.stop()
    record = _record(root / "outbox")
    gpu = (record or {}).get("energy", {}).get("gpu") or {}
    result = {
        "doctor": doctor.stdout + doctor.stderr,
        "interval_s": interval_s,
        "prolog_ms": prolog_ms,
        "epilog_ms": epilog_ms,
        "phases": phases,
        "counter_j": round(counter_j, 1),
        "power_10hz_j": round(integrator.joules(), 1),
        "power_samples": len(integrator.readings),
        "peak_w": max(watts for _, watts in integrator.readings),
        "record_gpu": gpu,
        "record_status": (record or {}).get("status"),
        "agent_cpu_ms_per_sample": round(agent_cpu_s * 1000 * interval_s / wall_s, 2),
        "agent_cpu_pct_of_core": round(agent_cpu_s * 100 / wall_s, 4),
        "record_coverage": (record or {}).get("coverage"),
        "record_notes": (record or {}).get("notes"),
        "record_elapsed_s": (record or {}).get("elapsed_s"),
        "record_gpu_use": ((record or {}).get("efficiency") or {}).get("gpus"),
        "timeline_gpu_w": [
            round(row[4] / (row[1] - row[0])) if row[4] is not None and row[1] > row[0] else None
            for row in (record or {}).get("timeline", {}).get("rows", [])
        ],
        "log_tail": (root / "jobcarbon.log").read_text()[-3000:] if (root / "jobcarbon.log").exists() else "",
    }
    if gpu.get("joules"):
        result |= _comparisons(gpu["joules"], (counter_j, *counted), integrator, job_start, record or {})
    return result


def _comparisons(
    record_j: float,
    counter: tuple[float, float, float],
    integrator: PowerIntegrator,
    job_start: float,
    record: dict[str, Any],
) -> dict[str, float]:
    """The record against the counter (joules, read from, read until) and the 10 Hz integral, over the
    script's window (prolog to epilog, which the record does not cover: its first sample follows the
    prolog) and over the record's own window, the counter's energy outside it taken from power."""
    counter_j, counted_from, counted_until = counter
    rows = record.get("timeline", {}).get("rows") or [[0.0, 0.0]]
    start, end = job_start + rows[0][0], job_start + rows[-1][1]
    inside_j = integrator.joules(start, end)
    outside_j = integrator.joules(counted_from, start) + integrator.joules(end, counted_until)
    return {
        "record_vs_counter_pct": round(100 * (record_j / counter_j - 1), 2),
        "record_vs_power_pct": round(100 * (record_j / integrator.joules() - 1), 2),
        "uncovered_s": round(counted_until - counted_from - (end - start), 3),
        "record_vs_counter_same_window_pct": round(100 * (record_j / (counter_j - outside_j) - 1), 2),
        "record_vs_power_same_window_pct": round(100 * (record_j / inside_j - 1), 2),
    }


def _record(outbox: Path, timeout_s: float = 30.0) -> dict[str, Any] | None:
    """The job's record, which the agent writes just after the epilog's answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = list(outbox.glob("*.json"))
        if records:
            return json.loads(records[0].read_text())
        time.sleep(0.05)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--library", type=Path, help="an NVML library to load (a dry run on the stand-in)")
    args = parser.parse_args(argv)
    sensor = NvmlSensor.open(config.Nvml(library=args.library))
    result: dict[str, Any] = {"facts": _facts()}
    try:
        result["sensor"] = _sensor_checks(sensor)
        uuid = sensor.devices()[0].uuid
        for name, interval_s, phases in JOBS:
            with tempfile.TemporaryDirectory(prefix="jobcarbon-gpucheck-") as scratch:
                print(f"== {name} ...", file=sys.stderr, flush=True)
                result[name] = _job(sensor, Path(scratch), uuid, args.library, interval_s, phases)
    finally:
        sensor.close()
    text = json.dumps(result, indent=2, default=str)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
