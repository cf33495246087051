"""Attribution policy: hand-computed splits, and the invariants that hold for any input."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_plugin.methods import Method
from slurm_plugin.node.attribution import (
    GIB,
    GpuClaim,
    JobInterval,
    NodeInterval,
    Share,
    attribute,
    estimated_cpu_j,
)

# One 10 s interval on a 4-core node with 64 GiB and 20 W of idle package power (200 J static).
NODE = NodeInterval(
    duration_s=10.0,
    cpu_j=1000.0,
    cpu_method=Method.MEASURED,
    dram_j=60.0,
    cpu_busy_s=25.0,  # the two jobs' 20 s plus 5 s of system daemons
    ncpus=4,
    mem_total_bytes=64 * GIB,
    idle_power_w=20.0,
)
BURNER = JobInterval("101.0", cpu_s=20.0, cpus=2, memory_bytes=16 * GIB)  # two cores flat out
SLEEPER = JobInterval("102.0", cpu_s=0.0, cpus=2, memory_bytes=8 * GIB)  # `sleep 3600`


def approx_share(joules: float, method: Method) -> Share:
    return Share(pytest.approx(joules), method)


def test_burner_and_sleeper_share_idle_power_by_cores_and_the_rest_by_cpu_time() -> None:
    result = attribute(NODE, [BURNER, SLEEPER], {})
    # static 200 J by cores: 100 J each; dynamic 800 J by CPU time: 800 x 20/25 = 640 J to the burner
    assert result["101.0"].cpu == approx_share(740.0, Method.APPORTIONED)
    assert result["102.0"].cpu == approx_share(100.0, Method.APPORTIONED)
    # the daemons' 160 J stays with the node
    # DRAM by share of node memory: 60 x 16/64 and 60 x 8/64
    assert result["101.0"].dram == approx_share(15.0, Method.APPORTIONED)
    assert result["102.0"].dram == approx_share(7.5, Method.APPORTIONED)
    assert result["101.0"].gpus == {}


def test_exclusive_node_gets_everything_with_the_node_method() -> None:
    whole = JobInterval("103.0", cpu_s=3.0, cpus=4, memory_bytes=1 * GIB)
    result = attribute(NODE, [whole], {})
    assert result["103.0"].cpu == Share(1000.0, Method.MEASURED)
    assert result["103.0"].dram == Share(60.0, Method.MEASURED)


def test_one_job_on_part_of_the_node_is_not_exclusive() -> None:
    result = attribute(NODE, [BURNER], {})
    assert result["101.0"].cpu == approx_share(740.0, Method.APPORTIONED)


def test_no_cpu_counter_means_no_cpu_part() -> None:
    node = NodeInterval(10.0, None, Method.MEASURED, None, 25.0, 4, 64 * GIB, 20.0)
    assert attribute(node, [BURNER], {})["101.0"].cpu is None


def test_estimated_cpu_energy_is_linear_in_utilisation() -> None:
    # 25 busy CPU-seconds of 40 available: 62.5 % between 20 W idle and 100 W TDP = 70 W
    assert estimated_cpu_j(10.0, 25.0, 4, 20.0, 100.0) == pytest.approx(700.0)
    assert estimated_cpu_j(10.0, 0.0, 4, 20.0, 100.0) == pytest.approx(200.0)
    assert estimated_cpu_j(10.0, 99.0, 4, 20.0, 100.0) == pytest.approx(1000.0)  # capped at TDP
    assert estimated_cpu_j(10.0, 5.0, 0, 20.0, 100.0) == pytest.approx(200.0)
    assert estimated_cpu_j(0.0, 5.0, 4, 20.0, 100.0) == 0.0


def test_without_rapl_the_estimate_is_split_and_stays_estimated() -> None:
    cpu_j = estimated_cpu_j(10.0, 25.0, 4, 20.0, 100.0)
    node = NodeInterval(10.0, cpu_j, Method.ESTIMATED, None, 25.0, 4, 64 * GIB, 20.0)
    result = attribute(node, [BURNER, SLEEPER], {})
    # static 200 J: 100 J each; dynamic 500 J x 20/25 = 400 J to the burner
    assert result["101.0"].cpu == approx_share(500.0, Method.ESTIMATED)
    assert result["102.0"].cpu == approx_share(100.0, Method.ESTIMATED)


def test_without_a_dram_counter_memory_is_estimated_per_gb() -> None:
    node = NodeInterval(10.0, 1000.0, Method.MEASURED, None, 25.0, 4, 64 * GIB, 20.0)
    result = attribute(node, [BURNER, SLEEPER], {})
    assert result["101.0"].dram == approx_share(0.3725 * 16 * 10, Method.ESTIMATED)  # 59.6 J
    assert result["102.0"].dram == approx_share(0.3725 * 8 * 10, Method.ESTIMATED)


def test_cgroup_time_above_node_busy_time_is_scaled_down() -> None:
    # cgroup and /proc/stat are read a few ms apart: the jobs can claim more than the node saw
    node = NodeInterval(10.0, 1000.0, Method.MEASURED, 60.0, 15.0, 4, 64 * GIB, 20.0)
    a = JobInterval("1.0", cpu_s=20.0, cpus=2, memory_bytes=0)
    b = JobInterval("2.0", cpu_s=20.0, cpus=2, memory_bytes=0)
    result = attribute(node, [a, b], {})
    assert result["1.0"].cpu == approx_share(500.0, Method.APPORTIONED)
    assert result["2.0"].cpu == approx_share(500.0, Method.APPORTIONED)


def test_overallocated_cores_share_idle_power_proportionally() -> None:
    node = NodeInterval(10.0, 200.0, Method.MEASURED, None, 0.0, 2, 64 * GIB, 20.0)
    a = JobInterval("1.0", cpu_s=0.0, cpus=2, memory_bytes=0)
    b = JobInterval("2.0", cpu_s=0.0, cpus=2, memory_bytes=0)
    result = attribute(node, [a, b], {})
    assert result["1.0"].cpu == approx_share(100.0, Method.APPORTIONED)


def test_whole_gpu_belongs_to_its_job() -> None:
    job = JobInterval("7.0", 0.0, 1, 0, gpus=(GpuClaim("GPU-aaaa", "GPU-aaaa"),))
    energy = {"GPU-aaaa": Share(3000.0, Method.MEASURED), "GPU-idle": Share(500.0, Method.MEASURED)}
    assert attribute(NODE, [job], energy)["7.0"].gpus == {"GPU-aaaa": Share(3000.0, Method.MEASURED)}


def test_integrated_gpu_energy_keeps_its_method() -> None:
    job = JobInterval("7.0", 0.0, 1, 0, gpus=(GpuClaim("GPU-aaaa", "GPU-aaaa"),))
    energy = {"GPU-aaaa": Share(3000.0, Method.INTEGRATED)}
    assert attribute(NODE, [job], energy)["7.0"].gpus["GPU-aaaa"].method == Method.INTEGRATED


def test_mig_slices_get_their_share_estimated() -> None:
    # an A100 split into 3g.20gb and 2g.10gb instances: 3/7 and 2/7 of the GPU's counter
    a = JobInterval("8.0", 0.0, 1, 0, gpus=(GpuClaim("MIG-1111", "GPU-bbbb", 3 / 7),))
    b = JobInterval("9.0", 0.0, 1, 0, gpus=(GpuClaim("MIG-2222", "GPU-bbbb", 2 / 7),))
    result = attribute(NODE, [a, b], {"GPU-bbbb": Share(1400.0, Method.MEASURED)})
    assert result["8.0"].gpus == {"MIG-1111": approx_share(600.0, Method.ESTIMATED)}
    assert result["9.0"].gpus == {"MIG-2222": approx_share(400.0, Method.ESTIMATED)}


def test_oversubscribed_gpu_is_split_evenly() -> None:
    claim = (GpuClaim("GPU-cccc", "GPU-cccc"),)
    jobs = [JobInterval("10.0", 0.0, 1, 0, gpus=claim), JobInterval("11.0", 0.0, 1, 0, gpus=claim)]
    result = attribute(NODE, jobs, {"GPU-cccc": Share(1200.0, Method.MEASURED)})
    assert result["10.0"].gpus == {"GPU-cccc": approx_share(600.0, Method.APPORTIONED)}
    assert result["11.0"].gpus == {"GPU-cccc": approx_share(600.0, Method.APPORTIONED)}


def test_unmeasured_gpu_is_left_out() -> None:
    job = JobInterval("7.0", 0.0, 1, 0, gpus=(GpuClaim("GPU-aaaa", "GPU-aaaa"),))
    assert attribute(NODE, [job], {})["7.0"].gpus == {}


def test_negative_node_energy_is_clamped() -> None:
    node = NodeInterval(10.0, -5.0, Method.MEASURED, -1.0, 25.0, 4, 64 * GIB, 20.0)
    job = JobInterval("7.0", 0.0, 1, 0, gpus=(GpuClaim("GPU-aaaa", "GPU-aaaa"),))
    result = attribute(node, [BURNER, job], {"GPU-aaaa": Share(-3.0, Method.MEASURED)})
    assert result["101.0"].cpu == Share(0.0, Method.APPORTIONED)
    assert result["101.0"].dram == Share(0.0, Method.APPORTIONED)
    assert result["7.0"].gpus["GPU-aaaa"].joules == 0.0


# -- DRAM: a static part by memory held, a dynamic part by memory in use (docs/attribution.md) -------

# The burner uses 16 GiB of the 32 GiB it holds; a 40 s-style short job uses 0.5 GiB of 16 GiB held.
HOLDER = JobInterval("101.0", cpu_s=20.0, cpus=2, memory_bytes=16 * GIB, memory_limit_bytes=32 * GIB)
TINY = JobInterval("104.0", cpu_s=0.1, cpus=1, memory_bytes=GIB // 2, memory_limit_bytes=16 * GIB)


def test_dram_static_half_by_memory_held_dynamic_half_by_memory_used() -> None:
    result = attribute(NODE, [HOLDER, TINY], {})
    # 60 J: static 30 J by held (of max(64, 48) GiB), dynamic 30 J by used (of max(64, 16.5) GiB)
    # holder: 30 x 32/64 + 30 x 16/64 = 15 + 7.5 = 22.5 J
    # tiny:   30 x 16/64 + 30 x 0.5/64 = 7.5 + 0.234375 = 7.734375 J (by use alone: 0.46875 J)
    assert result["101.0"].dram == approx_share(22.5, Method.APPORTIONED)
    assert result["104.0"].dram == approx_share(7.734375, Method.APPORTIONED)
    remainder = 60.0 - sum(r.dram.joules for r in result.values() if r.dram)
    assert remainder == pytest.approx(29.765625)  # the memory nobody holds or uses stays with the node


def test_dram_every_joule_once_when_the_jobs_hold_and_use_all_memory() -> None:
    a = JobInterval("1.0", 0.0, 2, memory_bytes=48 * GIB, memory_limit_bytes=48 * GIB)
    b = JobInterval("2.0", 0.0, 2, memory_bytes=16 * GIB, memory_limit_bytes=16 * GIB)
    result = attribute(NODE, [a, b], {})
    assert [result[k].dram.joules for k in ("1.0", "2.0")] == pytest.approx([45.0, 15.0])


def test_dram_held_beyond_the_node_is_scaled_down() -> None:
    # two jobs each limited to 48 GiB of 64 (memory overcommitted): static 30 x 48/96 = 15 J each
    a = JobInterval("1.0", 0.0, 2, memory_bytes=0, memory_limit_bytes=48 * GIB)
    b = JobInterval("2.0", 0.0, 2, memory_bytes=0, memory_limit_bytes=48 * GIB)
    result = attribute(NODE, [a, b], {})
    assert [result[k].dram.joules for k in ("1.0", "2.0")] == pytest.approx([15.0, 15.0])


def test_dram_limit_above_the_node_or_below_use_is_bounded() -> None:
    assert JobInterval("1.0", 0.0, 1, 4 * GIB, memory_limit_bytes=2**62).memory_held(64 * GIB) == 64 * GIB
    assert JobInterval("1.0", 0.0, 1, 4 * GIB, memory_limit_bytes=GIB).memory_held(64 * GIB) == 4 * GIB
    assert JobInterval("1.0", 0.0, 1, 4 * GIB).memory_held(64 * GIB) == 4 * GIB  # no limit: what it uses


def test_dram_static_fraction_is_the_sites_knob() -> None:
    node = NodeInterval(10.0, 1000.0, Method.MEASURED, 60.0, 25.0, 4, 64 * GIB, 20.0, 0.3725, 1.0)
    result = attribute(node, [TINY], {})
    assert result["104.0"].dram == approx_share(15.0, Method.APPORTIONED)  # 60 x 16/64, use ignored


def test_without_a_dram_counter_the_estimate_charges_memory_held() -> None:
    node = NodeInterval(10.0, 1000.0, Method.MEASURED, None, 25.0, 4, 64 * GIB, 20.0)
    # Green Algorithms: 0.3725 W/GB of the 16 GiB held x 10 s = 59.6 J
    assert attribute(node, [TINY], {})["104.0"].dram == approx_share(59.6, Method.ESTIMATED)


# -- invariants -----------------------------------------------------------------------------------

PARENTS = ["GPU-0", "GPU-1", "GPU-2"]
energy_j = st.one_of(st.none(), st.floats(min_value=-100, max_value=1e6))
nodes = st.builds(
    NodeInterval,
    duration_s=st.floats(min_value=0.01, max_value=3600),
    cpu_j=energy_j,
    cpu_method=st.sampled_from([Method.MEASURED, Method.ESTIMATED]),
    dram_j=energy_j,
    cpu_busy_s=st.floats(min_value=0, max_value=1e5),
    ncpus=st.integers(min_value=0, max_value=256),
    mem_total_bytes=st.integers(min_value=0, max_value=2**41),
    idle_power_w=st.floats(min_value=0, max_value=1000),
    dram_static_fraction=st.floats(min_value=0, max_value=1),
)
claims = st.lists(st.tuples(st.sampled_from(PARENTS), st.floats(min_value=0.01, max_value=1.0)), max_size=3)
job_fields = st.tuples(
    st.floats(min_value=-10, max_value=1e5),  # cgroup CPU seconds, may exceed the node's busy time
    st.integers(min_value=0, max_value=256),
    st.integers(min_value=0, max_value=2**41),
    claims,
    st.one_of(st.none(), st.integers(min_value=-1, max_value=2**42)),  # the cgroup's memory limit
)
gpu_energy = st.dictionaries(
    st.sampled_from(PARENTS),
    st.builds(Share, st.floats(min_value=-100, max_value=1e6), st.sampled_from(list(Method))),
)


def make_jobs(fields: list[tuple]) -> tuple[list[JobInterval], dict[str, str]]:
    """Jobs with unique keys and unique device ids, and which physical GPU each device is on."""
    jobs, parent_of = [], {}
    for n, (cpu_s, cpus, memory, gpus, limit) in enumerate(fields):
        claimed = []
        for m, (parent, share) in enumerate(gpus):
            uuid = f"MIG-{n}-{m}"
            parent_of[uuid] = parent
            claimed.append(GpuClaim(uuid, parent, share))
        jobs.append(JobInterval(f"{n}.0", cpu_s, cpus, memory, tuple(claimed), limit))
    return jobs, parent_of


def at_most(total: float, bound: float) -> bool:
    return total <= bound * (1 + 1e-9) + 1e-9


@given(node=nodes, fields=st.lists(job_fields, max_size=6), energy=gpu_energy)
def test_no_job_is_negative_and_jobs_never_exceed_the_node(
    node: NodeInterval, fields: list[tuple], energy: dict[str, Share]
) -> None:
    jobs, parent_of = make_jobs(fields)
    result = attribute(node, jobs, energy)
    assert set(result) == {job.key for job in jobs}
    parts = [p for r in result.values() for p in (r.cpu, r.dram, *r.gpus.values()) if p is not None]
    assert all(p.joules >= 0 for p in parts)
    if node.cpu_j is not None:
        assert at_most(sum(r.cpu.joules for r in result.values()), max(node.cpu_j, 0.0))
    else:
        assert all(r.cpu is None for r in result.values())
    if node.dram_j is not None:
        assert at_most(sum(r.dram.joules for r in result.values()), max(node.dram_j, 0.0))
    per_gpu: dict[str, float] = defaultdict(float)
    for r in result.values():
        for uuid, part in r.gpus.items():
            per_gpu[parent_of[uuid]] += part.joules
    for parent, joules in per_gpu.items():
        assert at_most(joules, max(energy[parent].joules, 0.0))
