"""Counter-anchored GPU energy: power gives the shape, the counter at anchors gives the total."""

from __future__ import annotations

import math

import pytest

from slurm_plugin.node.counters import Method
from slurm_plugin.node.gpu_energy import GpuTrack


def bursty_w(t: float) -> float:
    """600 W bursts of 0.3 s every second over a 90 W floor, plus a slow swing: a training step in step
    with the sampler, whose ticks at the half second never see a burst."""
    burst = 600.0 if (t % 1.0) < 0.3 else 90.0
    return burst + 50.0 * math.sin(t / 7.0)


def counter_mj(t: float, step_s: float = 0.001) -> float:
    """The true cumulative energy (mJ) of `bursty_w`, integrated finely: what the GPU's counter says."""
    steps = int(t / step_s)
    return sum(bursty_w((i + 0.5) * step_s) for i in range(steps)) * step_s * 1000


def run(track: GpuTrack, ticks: list[float], every_s: float) -> list:
    """Feed `track` a reading per tick, the counter at the first, the last and every `every_s`."""
    parts = []
    for index, t in enumerate(ticks):
        anchor = index in (0, len(ticks) - 1) or track.due(t, every_s)
        step = track.step(t, bursty_w(t), counter_mj(t) if anchor else None)
        assert not step.reset
        if step.part is not None:
            parts.append(step.part)
    return parts


def test_anchored_parts_sum_to_the_counter_delta_under_a_bursty_load() -> None:
    track = GpuTrack()
    ticks = [0.5 + i for i in range(90)]  # a 1 s interval, 89 intervals
    parts = run(track, ticks, every_s=20.0)
    truth_j = (counter_mj(ticks[-1]) - counter_mj(ticks[0])) / 1000
    assert sum(p.joules for p in parts) == pytest.approx(truth_j, rel=1e-9)
    assert all(p.method == Method.MEASURED and p.joules >= 0 for p in parts)
    assert track.anchored_until == ticks[-1]


def test_power_alone_would_miss_the_bursts_that_the_anchors_restore() -> None:
    ticks = [0.5 + i for i in range(40)]
    powered = GpuTrack()
    powered.drop_counter(0.0)  # what integration alone gives
    integrated = sum(p.joules for p in run(powered, ticks, every_s=10.0))
    truth_j = (counter_mj(ticks[-1]) - counter_mj(ticks[0])) / 1000
    assert integrated < 0.5 * truth_j  # the reason for anchors


def test_a_gpu_without_a_counter_integrates_power_and_is_final_at_once() -> None:
    track = GpuTrack()
    track.drop_counter(0.0)
    assert not track.due(100.0, 1.0)
    assert track.step(0.0, 100.0).part is None
    part = track.step(2.0, 300.0).part
    assert part is not None
    assert (part.joules, part.method) == (400.0, Method.INTEGRATED)  # trapezoid
    assert track.anchored_until == 2.0


def test_parts_wait_for_the_anchor_then_scale_in_place() -> None:
    track = GpuTrack()
    track.step(0.0, 100.0, 0.0)
    first = track.step(1.0, 100.0).part
    second = track.step(2.0, 300.0).part
    assert first is not None
    assert second is not None
    assert (first.joules, first.method, track.anchored_until) == (100.0, Method.INTEGRATED, 0.0)
    track.step(3.0, 300.0, 900_000.0)  # the counter says 900 J over the three seconds
    assert first.joules + second.joules == pytest.approx(900 * 300 / 600)
    assert first.method == Method.MEASURED
    assert track.anchored_until == 3.0


def test_a_failed_counter_read_extends_the_segment_to_the_next_anchor() -> None:
    track = GpuTrack()
    track.step(0.0, 200.0, 0.0)
    early = track.step(1.0, 200.0, None).part  # the anchor's counter read failed
    late = track.step(2.0, 200.0, 500_000.0).part
    assert early is not None
    assert late is not None
    assert early.joules + late.joules == pytest.approx(500.0)
    assert early.method == late.method == Method.MEASURED


def test_a_counter_reset_leaves_the_segment_integrated_and_says_so() -> None:
    track = GpuTrack()
    track.step(0.0, 200.0, 50_000_000.0)
    part = track.step(1.0, 200.0).part
    step = track.step(2.0, 200.0, 1_000.0)  # driver reload: the counter restarted
    assert step.reset
    assert part is not None
    assert step.part is not None
    assert (part.joules, part.method) == (200.0, Method.INTEGRATED)
    assert track.anchored_until == 2.0
    follow = track.step(3.0, 200.0, 201_000.0).part  # the next segment is anchored again
    assert follow is not None
    assert (follow.joules, follow.method) == (200.0, Method.MEASURED)


def test_without_power_readings_the_counter_delta_is_spread_by_duration() -> None:
    track = GpuTrack()
    track.step(0.0, None, 0.0)
    short = track.step(1.0, None).part
    long = track.step(4.0, None, 800_000.0).part
    assert short is not None
    assert long is not None
    assert (short.joules, long.joules) == (pytest.approx(200.0), pytest.approx(600.0))
