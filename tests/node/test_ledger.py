"""The node ledger's bookkeeping (node/ledger.py), by hand-computed examples: ticks summed into ledger
intervals, the jobs' part beside the node's, the remainder never negative, gaps flagged."""

from __future__ import annotations

from typing import Any

import pytest

from slurm_plugin.methods import Method
from slurm_plugin.node.attribution import NodeInterval
from slurm_plugin.node.counters import EnergyDelta
from slurm_plugin.node.ledger import NOT_MEASURED, NodeLedger


def node(cpu_j: float | None, dram_j: float | None = 10.0, duration_s: float = 100.0) -> NodeInterval:
    return NodeInterval(duration_s, cpu_j, Method.MEASURED, dram_j, 0.0, 8, 2**34, 40.0)


def line(
    t0: float, t1: float, cpu_j: float, dram_j: float = 2.0, cpus: int = 2, gpu: Any = None
) -> dict[str, Any]:
    return {
        "t0": t0,
        "t1": t1,
        "cpus": cpus,
        "cpu": [cpu_j, "apportioned"],
        "dram": [dram_j, "apportioned"],
        "gpu": gpu,
    }


def final(_uuid: str, _t: float) -> bool:
    return True


def test_ticks_are_summed_into_the_interval_their_start_falls_in() -> None:
    ledger = NodeLedger(300.0)
    for t0 in (0.0, 100.0, 200.0, 300.0):  # the fourth tick starts the second interval
        ledger.node_tick(t0, t0 + 100, node(500.0), {})
        ledger.job_line("7.0", line(t0, t0 + 100, 200.0))
    ledger.fold(final)
    (first,) = ledger.closed()
    doc = first.document()
    assert (doc["t0_s"], doc["t1_s"]) == (0.0, 300.0)
    assert (doc["cpu_j"], doc["jobs_cpu_j"]) == (1500.0, 600.0)  # remainder 900 J: idle cores
    assert (doc["dram_j"], doc["jobs_dram_j"]) == (30.0, 6.0)
    assert doc["gpu_j"] is None  # no GPU read: not a measured zero
    assert doc["jobs_core_s"] == 600.0
    assert doc["job_shares"] == [[7, 0, 606.0, 600.0]]
    ledger.close()
    (second,) = ledger.closed()
    assert (second.t0_s, second.t1_s) == (300.0, 400.0)


def test_an_idle_node_has_all_its_energy_as_remainder() -> None:
    ledger = NodeLedger(300.0)
    ledger.node_tick(0.0, 60.0, node(1200.0), {})
    ledger.close()
    doc = ledger.closed()[0].document()
    assert (doc["cpu_j"], doc["jobs_cpu_j"], doc["job_shares"]) == (1200.0, 0.0, [])


def test_a_tick_waits_for_its_gpu_parts_and_its_jobs_held_back_lines() -> None:
    ledger = NodeLedger(300.0)
    part = EnergyDelta(100.0, Method.INTEGRATED)  # provisional until the anchor scales it
    ledger.node_tick(0.0, 100.0, node(500.0), {"GPU-a": part})
    ledger.node_tick(300.0, 400.0, node(500.0), {})
    ledger.fold(lambda uuid, t: False)
    ledger.fold(final, held_from=100.0)  # the job's line for the first tick is not journaled yet
    assert ledger.closed() == []
    part.joules, part.method = 150.0, Method.MEASURED  # the anchor
    ledger.job_line("9.1", line(0.0, 100.0, 100.0, gpu={"GPU-a": [150.0, "measured"]}))
    ledger.fold(final)
    doc = ledger.closed()[0].document()
    assert (doc["gpu_j"], doc["gpu_method"], doc["jobs_gpu_j"]) == (150.0, "measured", 150.0)
    assert doc["job_shares"] == [[9, 1, 252.0, 200.0]]


def test_an_unmeasured_component_takes_its_jobs_estimate_and_is_flagged() -> None:
    ledger = NodeLedger(300.0)
    ledger.node_tick(0.0, 100.0, node(500.0, dram_j=None), {})
    ledger.job_line("7.0", line(0.0, 100.0, 100.0, dram_j=4.0))
    ledger.node_tick(100.0, 200.0, None, {})  # /proc/stat unreadable: nothing for node or jobs
    ledger.close()
    doc = ledger.closed()[0].document()
    assert (doc["dram_j"], doc["dram_method"], doc["jobs_dram_j"]) == (4.0, "estimated", 4.0)
    assert doc["unmeasured_s"] == 100.0
    assert doc["notes"] == [f"dram: {NOT_MEASURED}"]


def test_the_first_interval_says_what_came_before() -> None:
    ledger = NodeLedger(300.0, "the ledger has no figures from X: no agent ran")
    ledger.node_tick(0.0, 100.0, node(1.0), {})
    ledger.node_tick(300.0, 400.0, node(1.0), {})
    ledger.close()
    first, second = ledger.closed()
    assert first.notes == ["the ledger has no figures from X: no agent ran"]
    assert second.notes == []


@pytest.mark.parametrize("jobs_j", [0.0, 499.0, 500.0])
def test_jobs_plus_remainder_is_the_node(jobs_j: float) -> None:
    from slurm_plugin import node_record

    ledger = NodeLedger(300.0)
    ledger.node_tick(0.0, 100.0, node(500.0), {})
    if jobs_j:
        ledger.job_line("1.0", line(0.0, 100.0, jobs_j))
    ledger.close()
    doc = ledger.closed()[0].document()
    assert doc["jobs_cpu_j"] + node_record.remainder_j(doc, "cpu") == doc["cpu_j"]
