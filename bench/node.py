"""A simulated compute node in a scratch directory: RAPL tree, cgroup v1 tree, NVML stand-in, config.

Every path the hooks and the agent touch is a configured root (docs: config/jobcarbon.yaml), so the
benchmark runs the real prolog, epilog and agent against plain directories under /tmp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from testbed import nvml_standin, powermodel, venv

NODE_NAME = "bench-node"
JOB_UID = 1000
CGROUP_PREPEND = f"slurm_{NODE_NAME}"
JOB_CPUS = "0-1"


@dataclass(frozen=True)
class Node:
    """Paths of one simulated node; `config` is what JOBCARBON_CONFIG points at."""

    root: Path
    config: Path
    sysfs: Path
    cgroupfs: Path
    spool: Path
    outbox: Path
    log_file: Path
    nvml_library: Path | None
    python: Path  # a venv like the documented install's, which the hooks run with

    def journal(self, key: str) -> Path:
        return self.spool / "jobs" / key / "journal.jsonl"


def build_node(
    root: Path, interval_s: float, gpus: int = 0, fsync: bool = True, nvml_costs: dict[str, int] | None = None
) -> Node:
    """Write a 2-package RAPL tree with DRAM (4 summed zones), a v1 cgroup root and a config; the NVML
    stand-in burns `nvml_costs` (µs of CPU per call, e.g. `nvml_standin.H200_COSTS_US`)."""
    root.mkdir(parents=True, exist_ok=True)
    sysfs, cgroupfs = root / "sys", root / "cgroup"
    powermodel.build_powercap_tree(sysfs, packages=2, dram=True)
    for controller in ("cpuacct", "memory", "cpuset"):
        (cgroupfs / controller).mkdir(parents=True, exist_ok=True)
    library = _build_nvml(root / "nvml", gpus, nvml_costs) if gpus else None
    node = Node(
        root=root,
        config=root / "jobcarbon.yaml",
        sysfs=sysfs,
        cgroupfs=cgroupfs,
        spool=root / "spool",
        outbox=root / "outbox",
        log_file=root / "jobcarbon.log",
        nvml_library=library,
        python=venv.make(root / "venv"),
    )
    node.config.write_text(_config_text(node, interval_s, fsync), encoding="utf-8")
    return node


def _config_text(node: Node, interval_s: float, fsync: bool) -> str:
    """YAML for the node; JSON scalars are valid YAML and quote the paths safely."""
    lines = [
        "paths:",
        f"  sysfs: {json.dumps(str(node.sysfs))}",
        f"  cgroupfs: {json.dumps(str(node.cgroupfs))}",
        f"  spool: {json.dumps(str(node.spool))}",
        f"  outbox: {json.dumps(str(node.outbox))}",
        f"  log_file: {json.dumps(str(node.log_file))}",
        "sampler:",
        f"  interval_s: {interval_s}",
        f"  journal_fsync: {json.dumps(fsync)}",
        "cgroup:",
        "  version: v1",
    ]
    if node.nvml_library is not None:
        lines += ["nvml:", f"  library: {json.dumps(str(node.nvml_library))}"]
    return "\n".join(lines) + "\n"


def _build_nvml(directory: Path, count: int, costs: dict[str, int] | None) -> Path:
    """Compile the stand-in and program `count` H100s; the library reads the config beside itself."""
    library = nvml_standin.build(directory)
    gpus = [
        nvml_standin.FakeGpu(
            uuid=f"GPU-{index:08x}-0000-4000-8000-{index:012x}",
            minor=index,
            pci_bus_id=f"00000000:{0x18 + index:02X}:00.0",
            power_mw=300_000 + 10_000 * index,
        )
        for index in range(count)
    ]
    nvml_standin.write_config(directory / nvml_standin.CONFIG_NAME, gpus, costs=costs)
    return library


def add_job_cgroup(node: Node, job_id: int) -> None:
    """Create the job's cpuacct, memory and cpuset directories as slurmstepd would (cgroup v1)."""
    relative = Path(CGROUP_PREPEND, f"uid_{JOB_UID}", f"job_{job_id}")
    files = {
        "cpuacct": {"cpuacct.usage": str(job_id * 1_000_000)},
        "memory": {"memory.usage_in_bytes": str(512 << 20), "memory.stat": "total_inactive_file 1048576"},
        "cpuset": {"cpuset.cpus": JOB_CPUS},
    }
    for controller, contents in files.items():
        directory = node.cgroupfs / controller / relative
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in contents.items():
            (directory / name).write_text(text + "\n", encoding="ascii")


def simulator(node: Node) -> powermodel.Simulator:
    """A RAPL simulator the caller steps, so counters move between the agent's reads."""
    return powermodel.Simulator(node.sysfs)
