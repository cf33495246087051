"""The GPU use of a journal (slurm_plugin/gpu_use.py): the waste rule on hand-computed ticks, and the
timeline's run-length strings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_plugin.gpu_use import GpuUse, expand, runs

A, B = "GPU-a", "GPU-b"


def _entry(readings: dict[str, list[int | None]], joules: dict[str, float]) -> dict:
    return {"gpu_use": readings, "gpu": {uuid: [j, "measured"] for uuid, j in joules.items()}}


def test_a_tick_under_the_threshold_counts_its_energy_as_idle() -> None:
    use = GpuUse(5)
    use.add(_entry({A: [0, 100]}, {A: 50.0}), 10.0, 1.0)  # idle: 50 J wasted
    use.add(_entry({A: [4, 100]}, {A: 60.0}), 10.0, 1.0)  # under 5 %: idle
    use.add(_entry({A: [5, 200]}, {A: 70.0}), 10.0, 1.0)  # at the threshold: busy
    use.add(_entry({A: [None, None]}, {A: 80.0}), 10.0, 0.5)  # no reading: neither
    summary = use.summary()
    gpu = summary["gpus"][A]
    assert gpu["idle_j"] == 110.0
    assert summary["idle_gpu_j"] == 110.0
    assert gpu["sampled_s"] == 30.0
    assert gpu["idle_fraction"] == pytest.approx(2 / 3, abs=1e-4)
    assert gpu["util_mean_pct"] == 3.0
    assert gpu["util_max_pct"] == 5
    assert gpu["mem_peak_bytes"] == 200 * 2**20
    assert use.timeline() == {A: {"util_pct": "0,4,5,*1", "mem_mib": "100*2,200,*1"}}


def test_a_gpu_first_read_later_is_padded_and_a_bad_threshold_falls_back() -> None:
    use = GpuUse("ten")
    use.add(_entry({A: [90, 1]}, {A: 1.0}), 1.0, 1.0)
    use.add(_entry({A: [90, 1], B: [0, 0]}, {A: 1.0, B: 2.0}), 1.0, 1.0)
    assert use.summary()["gpu_idle_util_pct"] == 5.0
    assert expand(use.timeline()[B]["util_pct"]) == [None, 0]
    assert use.summary()["idle_gpu_j"] == 2.0


@given(st.lists(st.one_of(st.none(), st.integers(0, 100)), max_size=200))
def test_runs_expand_round_trip(values: list[int | None]) -> None:
    assert expand(runs(values)) == values


def test_the_worked_example_of_docs_attribution() -> None:
    """docs/attribution.md, "Waste": 2 GPUs, three 10 s ticks, GPU-b busy at the last."""
    use = GpuUse(5)
    for util_b in (0, 0, 40):
        use.add(_entry({A: [0, 0], B: [util_b, 0]}, {A: 1000.0, B: 2000.0}), 10.0, 1.0)
    summary = use.summary()
    assert summary["idle_gpu_j"] == 7000.0
    assert summary["gpus"][A]["idle_fraction"] == 1.0
    assert summary["gpus"][B]["idle_fraction"] == pytest.approx(2 / 3, abs=1e-4)
