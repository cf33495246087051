"""Simulated node hardware for the Slurm test bed: RAPL driven by real CPU load, four fake GPUs.

The powercap tree is updated by the power-model daemon (`testbed.powermodel run`), which also
writes the ground truth; the GPUs are the NVML stand-in, whose minor numbers match the
`/dev/fakegpuN` devices in gres.conf (minor 100+N), each drawing a different programmed power. A job
keeps a GPU busy by writing `nvml_standin.load_line` to `gpu_load_dir/<minor>` (`busy_gpus_script`);
otherwise its GPUs report 0 % utilisation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.host import poll
from testbed.nvml_standin import CONFIG_NAME, FakeGpu, build, write_config

REPO_ROOT = Path(__file__).resolve().parent.parent
GPU_POWER_W = (100, 200, 300, 400)
MAX_ENERGY_RANGE_UJ = 5_000_000_000  # 5 kJ: the counters wrap every ~30 s at full load


def fake_gpus() -> list[FakeGpu]:
    """GPU i sits on /dev/fakegpu<i> (minor 100+i) and draws GPU_POWER_W[i] watts."""
    return [
        FakeGpu(
            uuid=f"GPU-00000000-0000-4000-8000-00000000000{i}",
            minor=100 + i,
            pci_bus_id=f"00000000:{0x17 + 0x20 * i:02X}:00.0",
            power_mw=watts * 1000,
        )
        for i, watts in enumerate(GPU_POWER_W)
    ]


def busy_gpus_script(load_dir: Path, util_pct: int, mem_mib: int) -> str:
    """Shell lines that mark the job's GPUs (SLURM_JOB_GPUS: Slurm indices, minor 100+index) busy while
    the job's shell lives, as a CUDA program would keep them."""
    return (
        'for g in $(echo "$SLURM_JOB_GPUS" | tr , " "); do '
        f'echo "{util_pct} $$ {mem_mib}" > {load_dir}/$((100 + g)); done'
    )


@dataclass
class SimulatedHardware:
    scratch: Path

    @property
    def sysfs(self) -> Path:
        return self.scratch / "sys"

    @property
    def ground_truth(self) -> Path:
        return self.scratch / "power-truth.json"

    @property
    def nvml_library(self) -> Path:
        return self.scratch / "nvml" / "libnvidia-ml.so.1"

    @property
    def gpu_load_dir(self) -> Path:
        """Where jobs say how busy their GPUs are (world-writable and sticky, as /tmp)."""
        return self.scratch / "gpu-load"

    @property
    def pid_file(self) -> Path:
        return self.scratch / "powermodel.pid"

    @property
    def database(self) -> Path:
        return self.scratch / "jobcarbon.db"

    @property
    def spool(self) -> Path:
        """jobcarbon's private spool: apart from Slurm's SlurmdSpoolDir, as install.md asks."""
        return self.scratch / "jobcarbon-spool"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.database}"

    def start(self) -> None:
        """(Re)build the powercap tree and GPUs and start the power-model daemon.

        A database left by an earlier bring-up is removed: job ids restart at 1, so its parts would
        make the new jobs' records duplicates. Without a database the nodes leave records in the
        outbox (the demo shows them there); `create_database` turns delivery on.
        """
        self.stop()
        self.remove_database()
        build(self.nvml_library.parent)
        shutil.rmtree(self.gpu_load_dir, ignore_errors=True)
        self.gpu_load_dir.mkdir(parents=True)
        self.gpu_load_dir.chmod(0o1777)
        write_config(self.nvml_library.parent / CONFIG_NAME, fake_gpus(), load_dir=self.gpu_load_dir)
        command = [sys.executable, "-m", "testbed.powermodel", "run", "--build", "--sysfs", str(self.sysfs)]
        command += ["--ground-truth", str(self.ground_truth), "--period", "0.1"]
        command += ["--max-energy-range-uj", str(MAX_ENERGY_RANGE_UJ)]
        self.ground_truth.unlink(missing_ok=True)
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid_file.write_text(str(process.pid))
        poll(lambda: self.ground_truth.exists() or None, 20, "the power model's first step")

    def stop(self) -> None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass
        self.pid_file.unlink(missing_ok=True)

    def clear_job_files(self) -> None:
        """Remove jobcarbon's spool, outbox and quarantine: job ids restart at 1 with each cluster, so
        an earlier run's journals and records would collide with the new jobs'."""
        for leftover in (self.spool, self.scratch / "outbox", self.scratch / "quarantine"):
            shutil.rmtree(leftover, ignore_errors=True)

    def create_database(self) -> None:
        """An empty accounting database: the agent delivers each record into it after the job."""
        from slurm_plugin.storage import Store

        self.remove_database()
        Store.open(self.database_url, 10.0, create=True).close()

    def remove_database(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            self.database.with_name(self.database.name + suffix).unlink(missing_ok=True)

    def truth(self) -> dict[str, Any]:
        """The simulator's cumulative true energy per channel (joules) and its timestamp."""
        return json.loads(self.ground_truth.read_text())

    def write_jobcarbon_config(self, path: Path, interval_s: float = 1.0) -> Path:
        """jobcarbon's config for the test bed: simulated sysfs, real /proc and cgroups, a SQLite
        database in the scratch directory (used once `create_database` made it), grid zone DE."""
        path.write_text(
            "cluster: testbed\n"
            f"paths:\n  sysfs: {self.sysfs}\n  spool: {self.spool}\n"
            f"  outbox: {self.scratch / 'outbox'}\n  log_file: {self.scratch / 'jobcarbon.log'}\n"
            f"  quarantine: {self.scratch / 'quarantine'}\n"
            f"sampler:\n  interval_s: {interval_s}\n"
            f"nvml:\n  library: {self.nvml_library}\n  slurm_index_order: minor_number\n"
            f"database:\n  url: {self.database_url}\n"
            "accounting:\n  zone: DE\n  pue: 1.2\n"
        )
        return path
