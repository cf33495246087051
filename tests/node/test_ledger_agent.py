"""The node ledger kept by the agent on the simulated node: every joule the RAPL counters advanced is in
one ledger interval, Σ jobs + remainder = node per interval, and the jobs' part matches their records."""

from __future__ import annotations

import bisect
import itertools
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from slurm_plugin import config as config_module
from slurm_plugin import node_record
from slurm_plugin.node import jobenv
from slurm_plugin.node.agent import Agent
from slurm_plugin.times import utc
from tests.simnode import NODE, SimNode, driven_agent

LEDGER = "ledger:\n  interval_s: 0.25\n  record_interval_s: 0.01\n"
STEP_S = 0.06


class Counters:
    """The simulated package and DRAM counters, and when each value was set."""

    def __init__(self, node: SimNode):
        self.node, self.times, self.values = node, [], []
        self.set(1000.0, 100.0)

    def set(self, package_j: float, dram_j: float) -> None:
        self.node.set_rapl(package_j, dram_j)
        self.times.append(time.time())
        self.values.append((package_j, dram_j))

    def add(self, package_j: float, dram_j: float) -> None:
        package, dram = self.values[-1]
        self.set(package + package_j, dram + dram_j)

    def at(self, t: float) -> tuple[float, float]:
        """The values a tick at `t` read: records round times to 0.1 ms, and a tick follows its set within
        microseconds, so look a little later (the next set is a step away)."""
        return self.values[bisect.bisect_right(self.times, t + 0.001) - 1]


def _run(node: SimNode, agent: Agent, counters: Counters) -> None:
    """Idle, a job of one CPU (of the host's two or more), busy, idle again; ticks driven one at a time."""
    agent._tick()
    for _ in range(3):
        time.sleep(STEP_S)
        counters.add(30.0, 3.0)
        agent._tick()
    node.job_cgroup(81, cpus="0", cpu_s=0.0)
    agent.spool.create_job(jobenv.from_env(node.env(81), "sim", NODE), time.time())
    agent._scan()
    for step in range(1, 9):
        time.sleep(STEP_S)
        node.job_cgroup(81, cpus="0", cpu_s=STEP_S * step)
        counters.add(60.0, 4.0)
        agent._tick()
        agent._keep_ledger()
    agent.spool.request_stop("81.0", time.time())
    agent._scan()
    for _ in range(5):
        time.sleep(STEP_S)
        counters.add(30.0, 3.0)
        agent._tick()
        agent._keep_ledger()


def node_intervals(outbox: Path) -> list[dict[str, Any]]:
    intervals = []
    for path in sorted((outbox / "node").glob("*.json")):
        intervals += node_record.parse(path.read_bytes())["intervals"]
    return sorted(intervals, key=lambda i: i["t0_s"])


@pytest.fixture
def ran(tmp_path: Path) -> tuple[SimNode, Counters, list[str]]:
    node = SimNode(tmp_path, interval_s=60, extra_config=LEDGER)
    log: list[str] = []
    agent = driven_agent(node, log)
    counters = Counters(node)
    try:
        _run(node, agent, counters)
    finally:
        agent._close()
    return node, counters, log


def test_every_joule_the_counters_advanced_is_in_one_interval(
    ran: tuple[SimNode, Counters, list[str]],
) -> None:
    node, counters, _ = ran
    intervals = node_intervals(node.outbox)
    assert len(intervals) >= 3
    for before, after in itertools.pairwise(intervals):
        assert after["t0_s"] == before["t1_s"]  # contiguous: no tick lost between intervals
    for interval in intervals:
        start, end = counters.at(interval["t0_s"]), counters.at(interval["t1_s"])
        assert interval["cpu_j"] == pytest.approx(end[0] - start[0], abs=1e-3)
        assert interval["dram_j"] == pytest.approx(end[1] - start[1], abs=1e-3)
    first, last = counters.at(intervals[0]["t0_s"]), counters.values[-1]
    assert sum(i["cpu_j"] for i in intervals) == pytest.approx(last[0] - first[0], abs=1e-3)


def test_jobs_plus_remainder_is_the_node_and_the_jobs_part_is_their_records(
    ran: tuple[SimNode, Counters, list[str]],
) -> None:
    node, _, _ = ran
    intervals = node_intervals(node.outbox)
    record = node.record(81)
    assert record is not None
    rows = record["timeline"]["rows"]
    origin = utc(record["timeline"]["origin"])
    assert origin is not None
    base = origin.timestamp()
    for interval in intervals:
        for component in ("cpu", "dram"):
            measured, jobs = interval[f"{component}_j"], interval[f"jobs_{component}_j"]
            remainder = node_record.remainder_j(interval, component)
            assert jobs + remainder == pytest.approx(measured, rel=0.005)
            assert remainder >= 0
        # rows are to the ms and intervals to 0.1 ms: a row is in the interval its middle is in
        inside = [r for r in rows if interval["t0_s"] <= base + (r[0] + r[1]) / 2 < interval["t1_s"]]
        assert interval["jobs_cpu_j"] == pytest.approx(sum(r[2] for r in inside), rel=0.005, abs=1e-3)
    # the job never gets it all (an interval may also hold just its stop tick, a ms without energy)
    busy = [i for i in intervals if i["jobs_cpu_j"] > 0]
    assert len(busy) >= 2
    assert all(i["jobs_cpu_j"] < i["cpu_j"] for i in busy)
    assert sum(i["jobs_cpu_j"] for i in intervals) == pytest.approx(
        node.record(81)["energy"]["cpu"]["joules"],
        rel=0.005,  # type: ignore[index]
    )


def test_a_restarted_agent_flags_the_gap_before_its_first_interval(
    ran: tuple[SimNode, Counters, list[str]],
) -> None:
    node, counters, _ = ran
    agent = Agent(config_module.load(node.config), lambda level, text: None)
    try:
        agent._tick()
        time.sleep(STEP_S)
        counters.add(30.0, 3.0)
        agent._tick()
    finally:
        agent._close()
    last = node_intervals(node.outbox)[-1]
    assert any("no agent ran" in note for note in last["notes"])


def _run_resident(node: SimNode) -> None:
    """A resident agent watching every GPU for 13 ticks."""
    agent = driven_agent(node, persistent=True)
    try:
        agent.sampler.watch_all_gpus()
        for _ in range(12):
            agent._tick()
            time.sleep(STEP_S)
        agent._tick()
    finally:
        agent._close()


def test_a_resident_agent_reads_the_idle_gpus_into_the_ledger(tmp_path: Path) -> None:
    from testbed.nvml_standin import CONFIG_NAME, FakeGpu, build, write_config

    library = build(tmp_path / "nvml")
    gpu = FakeGpu("GPU-00000000-0000-4000-8000-0000000000bb", minor=0, pci_bus_id="00000000:17:00.0")
    write_config(library.parent / CONFIG_NAME, [gpu])
    settings = f"nvml:\n  library: {library}\n  counter_interval_s: 0.2\n" + LEDGER
    node = SimNode(tmp_path / "node", interval_s=0.05, extra_config=settings)
    # In a child: a process loads one libnvidia-ml.so.1 for good, and this one is not the sensor tests'.
    child = multiprocessing.get_context("fork").Process(target=_run_resident, args=(node,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    intervals = node_intervals(node.outbox)
    span = intervals[-1]["t1_s"] - intervals[0]["t0_s"]
    gpu_j = sum(i["gpu_j"] or 0.0 for i in intervals)
    assert gpu_j == pytest.approx(gpu.power_mw / 1000 * span, rel=0.02)
    assert all(i["jobs_gpu_j"] == 0 for i in intervals)  # no job: all of it is the remainder
