"""The sampler on a simulated 64-CPU cgroup v2 node whose job cgroups lack what attribution uses
(issue 13): a cpuset that does not confine the job (ConstrainCores=no), no memory controller."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slurm_plugin import config as config_module
from slurm_plugin.node.jobenv import JobInfo
from slurm_plugin.node.sampler import NodeSampler
from testbed.powermodel import build_powercap_tree, set_energy

NCPUS = 64
IDLE_W = 20.0  # cpu.idle_power_w of the one package
SCOPE = Path("system.slice", "slurmstepd.scope")


class V2Node:
    """procfs with 64 CPUs, one RAPL package and DRAM, a cgroup v2 tree under the slurmstepd scope."""

    def __init__(self, root: Path):
        self.root = root
        self.procfs, self.sysfs, self.cgroupfs = root / "proc", root / "sys", root / "cgroup"
        self.procfs.mkdir()
        self.busy_jiffies = 0
        self.set_busy(0.0)
        (self.procfs / "meminfo").write_text("MemTotal:       268435456 kB\n")
        build_powercap_tree(self.sysfs, packages=1, dram=True, tdp_w=280.0)
        (self.cgroupfs / SCOPE).mkdir(parents=True)
        (self.cgroupfs / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (self.cgroupfs / SCOPE / "cpuset.cpus.effective").write_text(f"0-{NCPUS - 1}\n")
        path = root / "config.yaml"
        path.write_text(
            f"cluster: sim\npaths:\n  sysfs: {self.sysfs}\n  procfs: {self.procfs}\n"
            f"  cgroupfs: {self.cgroupfs}\n  spool: {root / 'spool'}\n  outbox: {root / 'outbox'}\n"
            f"sampler:\n  journal_fsync: false\ncpu:\n  idle_power_w: {IDLE_W}\nnvml:\n  enabled: false\n"
        )
        self.config = config_module.load(path)

    def set_busy(self, busy_s: float) -> None:
        """The aggregate line of /proc/stat with `busy_s` of user time (100 jiffies a second)."""
        per_cpu = "".join(f"cpu{i} 0 0 0 0 0 0 0 0 0 0\n" for i in range(NCPUS))
        (self.procfs / "stat").write_text(f"cpu  {int(busy_s * 100)} 0 0 999999 0 0 0 0 0 0\n{per_cpu}")

    def job(self, job_id: int, cpus: str, cpu_s: float, memory: bool = True) -> None:
        job = self.cgroupfs / SCOPE / f"job_{job_id}"
        job.mkdir(exist_ok=True)
        (job / "cpu.stat").write_text(f"usage_usec {int(cpu_s * 1e6)}\nuser_usec 0\nsystem_usec 0\n")
        (job / "cpuset.cpus.effective").write_text(cpus + "\n")
        if memory:
            (job / "memory.current").write_text(f"{4 * 2**30}\n")
            (job / "memory.stat").write_text("inactive_file 0\n")

    def rapl(self, package_j: float, dram_j: float) -> None:
        set_energy(self.sysfs, "package-0", int(package_j * 1e6))
        set_energy(self.sysfs, "dram-0", int(dram_j * 1e6))


def _info(job_id: int, cpus_per_node: int | None) -> JobInfo:
    return JobInfo("sim", job_id, 0, "node1", "alice", 1000, 1000, cpus_per_node=cpus_per_node)


def _run(node: V2Node, info: JobInfo, memory: bool = True) -> list[dict[str, Any]]:
    """The job alone on the node for two 10 s intervals: 1 s of CPU each, 500 J package, 50 J DRAM."""
    sampler = NodeSampler(node.config, lambda level, text: None)
    node.job(info.job_id, f"0-{NCPUS - 1}", 0.0, memory)
    node.rapl(0.0, 0.0)
    journal = node.root / f"{info.job_id}.jsonl"
    sampler.tick(now=1000.0)
    sampler.add(info, 1000.0, journal, None, now=1000.0)
    for step in (1, 2):
        node.job(info.job_id, f"0-{NCPUS - 1}", 1.0 * step, memory)
        node.set_busy(1.0 * step)
        node.rapl(500.0 * step, 50.0 * step)
        sampler.tick(now=1000.0 + 10 * step)
    sampler.remove(info.key)
    return [json.loads(line) for line in journal.read_text().splitlines()]


def test_a_one_cpu_job_alone_on_an_unconstrained_64_cpu_node_is_apportioned_not_exclusive(
    tmp_path: Path,
) -> None:
    entries = _run(V2Node(tmp_path), _info(11, cpus_per_node=1))
    intervals = [e for e in entries if e["type"] == "interval"]
    assert len(intervals) == 2
    static_j, dynamic_j = IDLE_W * 10, 500.0 - IDLE_W * 10
    for interval in intervals:
        assert interval["cpus"] == 1
        assert "cpuset" not in interval  # the whole node's cpuset is not the job's allocation
        joules, method = interval["cpu"]
        assert method == "apportioned"
        # 1/64 of the static power, and all of the dynamic part (it is the only busy process)
        assert joules == pytest.approx(static_j / NCPUS + dynamic_j, rel=1e-6)
        assert interval["dram"][1] == "apportioned"
    notes = [e["text"] for e in entries if e["type"] == "note"]
    assert any("does not confine it (ConstrainCores=no)" in n and "1 allocated CPUs" in n for n in notes)


def test_a_job_holding_every_cpu_of_an_unconstrained_node_is_still_exclusive(tmp_path: Path) -> None:
    entries = _run(V2Node(tmp_path), _info(12, cpus_per_node=NCPUS))
    intervals = [e for e in entries if e["type"] == "interval"]
    assert [i["cpu"] for i in intervals] == [[500.0, "measured"]] * 2


def test_unknown_allocation_on_an_unconstrained_node_gets_no_static_power(tmp_path: Path) -> None:
    entries = _run(V2Node(tmp_path), _info(13, cpus_per_node=None))
    intervals = [e for e in entries if e["type"] == "interval"]
    assert all(i["cpu"] == [pytest.approx(500.0 - IDLE_W * 10), "apportioned"] for i in intervals)
    assert any("allocated CPUs are unknown" in e.get("text", "") for e in entries)


def test_without_the_memory_controller_cpu_is_still_measured_and_memory_noted(tmp_path: Path) -> None:
    entries = _run(V2Node(tmp_path), _info(14, cpus_per_node=1), memory=False)
    intervals = [e for e in entries if e["type"] == "interval"]
    assert [i["cpu_s"] for i in intervals] == [1.0, 1.0]  # the job's CPU time is kept on every tick
    assert all(i["cpu"][0] > 290 and i["mem_b"] == 0 and i["dram"][0] == 0 for i in intervals)
    notes = [e["text"] for e in entries if e["type"] == "note"]
    assert any("no memory controller" in n for n in notes)
