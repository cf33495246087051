"""Check the NVML path on a real NVIDIA GPU: `python3 -m bench.gpu_check [--out DIR]`.

Not a test (CI has no GPU) but the one prepared script to run where a GPU machine is lent. It runs
the real prolog, agent and epilog with the node's real /sys, /proc and libnvidia-ml, a simulated
cgroup v1 tree for the job, and a GPU load of known shape (idle, full load, 50 % duty cycle, idle).
Meanwhile it reads the GPU's energy counter itself and integrates power at 10 Hz, so the record's
GPU joules can be compared with two independent figures. Results: DIR/gpu_check.json and stdout.
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

from slurm_plugin import config
from slurm_plugin.sensors.nvml import NvmlSensor

REPO = Path(__file__).resolve().parent.parent
NODE = "gpunode"
JOB_ID = 4242
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
    for _ in range(8):
        a @ a
    torch.cuda.synchronize()
"""


class PowerIntegrator(threading.Thread):
    """Integrates nvmlDeviceGetPowerUsage at 10 Hz (trapezoids) while the job runs."""

    def __init__(self, nvml: Any, handle: Any):
        super().__init__(daemon=True)
        self._nvml, self._handle = nvml, handle
        self.joules = 0.0
        self.samples = 0
        self.peak_w = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        last_t, last_w = time.monotonic(), self._watts()
        while not self._halt.wait(0.1):
            now, watts = time.monotonic(), self._watts()
            self.joules += (now - last_t) * (watts + last_w) / 2
            self.samples += 1
            self.peak_w = max(self.peak_w, watts)
            last_t, last_w = now, watts

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
        "nvmlDeviceGetTotalEnergyConsumption": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        "nvmlDeviceGetPowerUsage": lambda: nvml.nvmlDeviceGetPowerUsage(handle),
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
    }


def _cost_us(call: Any, runs: int = 200) -> dict[str, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(runs):
        call()
    return {
        "cpu": round((time.process_time() - cpu0) / runs * 1e6, 1),
        "wall": round((time.perf_counter() - wall0) / runs * 1e6, 1),
    }


def _agent_cpu_s(spool: Path) -> float:
    """CPU seconds (user + system) the node agent has used so far."""
    from slurm_plugin.node.agent_client import request

    pid = int(request(spool / "agent.sock", {"op": "status"}, 2.0)["pid"])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _node(root: Path, library: Path | None) -> tuple[Path, dict[str, str]]:
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
        f"sampler:\n  interval_s: 1\n  journal_fsync: false\ncgroup:\n  version: v1\n"
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


def _job(sensor: NvmlSensor, root: Path, uuid: str, library: Path | None) -> dict[str, Any]:
    """One job through the real hooks; the script's own counter and 10 Hz power integral beside it."""
    nvml = sensor._nvml
    handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
    _config, env = _node(root, library)
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
    prolog_ms = _hook("prolog", env)
    time.sleep(1)
    agent_cpu0 = _agent_cpu_s(root / "spool")
    phases = [("idle", 5.0), ("full", 20.0), ("duty", 10.0), ("idle", 5.0)]
    for phase, seconds in phases:
        if phase == "idle":
            time.sleep(seconds)
        else:
            _load(phase, seconds)
    agent_cpu_s = _agent_cpu_s(root / "spool") - agent_cpu0
    epilog_ms = _hook("epilog", env)
    counter_j = (nvml.nvmlDeviceGetTotalEnergyConsumption(handle) - counter_start) / 1000
    integrator.stop()
    records = list((root / "outbox").glob("*.json"))
    record = json.loads(records[0].read_text()) if records else None
    gpu = (record or {}).get("energy", {}).get("gpu") or {}
    result = {
        "doctor": doctor.stdout + doctor.stderr,
        "prolog_ms": prolog_ms,
        "epilog_ms": epilog_ms,
        "phases": phases,
        "counter_j": round(counter_j, 1),
        "power_10hz_j": round(integrator.joules, 1),
        "power_samples": integrator.samples,
        "peak_w": integrator.peak_w,
        "record_gpu": gpu,
        "record_status": (record or {}).get("status"),
        "agent_cpu_ms_per_sample": round(agent_cpu_s * 1000 / sum(seconds for _, seconds in phases), 2),
        "record_coverage": (record or {}).get("coverage"),
        "record_notes": (record or {}).get("notes"),
        "record_elapsed_s": (record or {}).get("elapsed_s"),
        "timeline_gpu_w": [
            round(row[4] / (row[1] - row[0])) if row[4] is not None and row[1] > row[0] else None
            for row in (record or {}).get("timeline", {}).get("rows", [])
        ],
        "log_tail": (root / "jobcarbon.log").read_text()[-3000:] if (root / "jobcarbon.log").exists() else "",
    }
    if gpu.get("joules"):
        result["record_vs_counter_pct"] = round(100 * (gpu["joules"] / counter_j - 1), 2)
        result["record_vs_power_pct"] = round(100 * (gpu["joules"] / integrator.joules - 1), 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--library", type=Path, help="an NVML library to load (a dry run on the stand-in)")
    args = parser.parse_args(argv)
    sensor = NvmlSensor.open(config.Nvml(library=args.library))
    result: dict[str, Any] = {"facts": _facts()}
    try:
        result["sensor"] = _sensor_checks(sensor)
        with tempfile.TemporaryDirectory(prefix="jobcarbon-gpucheck-") as scratch:
            result["job"] = _job(sensor, Path(scratch), sensor.devices()[0].uuid, args.library)
    finally:
        sensor.close()
    text = json.dumps(result, indent=2, default=str)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
