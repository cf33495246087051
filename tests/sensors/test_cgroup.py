"""Finding and reading Slurm job cgroups on simulated v1 and v2 trees laid out as slurmstepd does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from slurm_plugin.config import Cgroup
from slurm_plugin.sensors import cgroup_v1, cgroup_v2
from slurm_plugin.sensors.base import Status
from slurm_plugin.sensors.cgroup import CgroupSensor, detect_version, find_job_cgroup
from slurm_plugin.sensors.cgroup_types import CgroupKey, JobUsage, memory_limit

JOB = CgroupKey(job_id=4242, uid=1000, node="node001", sluid="s0KZ3M1Q7H2B4X")
CPUS = frozenset({0, 1, 2, 3, 8})
USAGE = JobUsage(cpu_s=1234.56789, memory_bytes=1_610_612_736 - 402_653_184, cpus=CPUS)

# memory.stat of a v1 job cgroup: its tasks live in step_* children, so only total_* is non-zero.
V1_MEMORY_STAT = """\
cache 0
rss 0
rss_huge 0
shmem 0
mapped_file 0
dirty 0
writeback 0
pgpgin 0
pgpgout 0
pgfault 0
pgmajfault 0
inactive_anon 0
active_anon 0
inactive_file 0
active_file 0
unevictable 0
hierarchical_memory_limit 8589934592
hierarchical_memsw_limit 9223372036854771712
total_cache 536870912
total_rss 1073741824
total_rss_huge 0
total_shmem 0
total_mapped_file 12582912
total_dirty 0
total_writeback 0
total_pgpgin 812345
total_pgpgout 421234
total_pgfault 1034567
total_pgmajfault 12
total_inactive_anon 0
total_active_anon 1073741824
total_inactive_file 402653184
total_active_file 134217728
total_unevictable 0
"""

V2_MEMORY_STAT = """\
anon 1073741824
file 536870912
kernel 8617984
kernel_stack 294912
pagetables 2445312
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 12582912
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 0
active_anon 1073741824
inactive_file 402653184
active_file 134217728
unevictable 0
slab_reclaimable 4374528
slab_unreclaimable 1280000
workingset_refault_anon 0
workingset_refault_file 0
"""

V2_CPU_STAT = """\
usage_usec 1234567890
user_usec 1200000000
system_usec 34567890
core_sched.force_idle_usec 0
nr_periods 0
nr_throttled 0
throttled_usec 0
nr_bursts 0
burst_usec 0
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_tree(root: Path, top: str = "slurm_node001", cpuacct: str = "cpuacct", effective: bool = True) -> Path:
    """`<root>/<controller>/<top>/uid_1000/job_4242` for cpuacct, memory and cpuset, as xcgroup.c makes."""
    rel = Path(top, "uid_1000", "job_4242")
    write(root / cpuacct / rel / "cpuacct.usage", "1234567890000\n")
    write(root / cpuacct / rel / "step_0" / "cpuacct.usage", "1234567890000\n")
    write(root / "memory" / rel / "memory.usage_in_bytes", "1610612736\n")
    write(root / "memory" / rel / "memory.stat", V1_MEMORY_STAT)
    write(root / "cpuset" / rel / "cpuset.cpus", "0-3,8\n")
    if effective:
        write(root / "cpuset" / rel / "cpuset.effective_cpus", "0-3,8\n")
    return root / cpuacct / rel


def v2_tree(root: Path, scope: str = "slurmstepd.scope", name: str = "job_4242") -> Path:
    """`<root>/system.slice/<scope>/<name>` with the files the kernel puts in a job cgroup."""
    write(root / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
    job = root / "system.slice" / scope / name
    write(job / "cpu.stat", V2_CPU_STAT)
    write(job / "memory.current", "1610612736\n")
    write(job / "memory.stat", V2_MEMORY_STAT)
    write(job / "cpuset.cpus.effective", "0-3,8\n")
    write(job / "step_0" / "cpu.stat", V2_CPU_STAT)
    return job


# -- version --------------------------------------------------------------------------------------


def test_detect_v2(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    assert detect_version(tmp_path) == "v2"


@pytest.mark.parametrize("cpuacct", ["cpuacct", "cpu,cpuacct"])
def test_detect_v1(tmp_path: Path, cpuacct: str) -> None:
    v1_tree(tmp_path, cpuacct=cpuacct)
    assert detect_version(tmp_path) == "v1"


def test_hybrid_hierarchy_is_v1(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    write(tmp_path / "unified" / "cgroup.controllers", "")
    assert detect_version(tmp_path) == "v1"


def test_no_cgroups(tmp_path: Path) -> None:
    assert detect_version(tmp_path) is None
    assert detect_version(tmp_path / "absent") is None
    assert find_job_cgroup(Cgroup(), tmp_path, JOB) is None


def test_probe_says_absent_mismatched_or_where_slurm_is(tmp_path: Path) -> None:
    assert CgroupSensor(Cgroup(), tmp_path).probe().status is Status.ABSENT
    v2_tree(tmp_path)
    mismatch = CgroupSensor(Cgroup(version="v1"), tmp_path).probe()
    assert (mismatch.status, mismatch.reason) == (Status.ERROR, f"configured v1 but {tmp_path} is v2")
    found = CgroupSensor(Cgroup(), tmp_path).probe()
    assert found.status is Status.OK
    assert found.reason.startswith(f"v2 at {tmp_path}; ")


# -- cgroup v1 ------------------------------------------------------------------------------------


def test_v1_node_prefixed_layout(tmp_path: Path) -> None:
    path = v1_tree(tmp_path)
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert isinstance(found, cgroup_v1.V1JobCgroup)
    assert found.path == path
    usage = found.read()
    assert usage == JobUsage(pytest.approx(1234.56789), 1_207_959_552, CPUS)
    assert usage == USAGE


def test_v1_plain_slurm_layout(tmp_path: Path) -> None:
    path = v1_tree(tmp_path, top="slurm")
    found = find_job_cgroup(Cgroup(version="v1"), tmp_path, JOB)
    assert found is not None
    assert found.path == path
    assert found.read() == USAGE


def test_v1_joint_cpu_cpuacct_mount(tmp_path: Path) -> None:
    path = v1_tree(tmp_path, cpuacct="cpu,cpuacct")
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.path == path
    assert found.read() == USAGE


def test_v1_configured_prepend(tmp_path: Path) -> None:
    v1_tree(tmp_path, top="site_node001")
    assert find_job_cgroup(Cgroup(), tmp_path, JOB) is None
    assert find_job_cgroup(Cgroup(v1_prepend="site"), tmp_path, JOB) is not None


def test_v1_cpuset_falls_back_to_cpuset_cpus(tmp_path: Path) -> None:
    v1_tree(tmp_path, effective=False)
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().cpus == CPUS


def test_v1_without_cpuset_files_has_no_cpus(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    shutil.rmtree(tmp_path / "cpuset")
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().cpus == frozenset()


@pytest.mark.parametrize(
    "job",
    [CgroupKey(4243, 1000, "node001"), CgroupKey(4242, 1001, "node001"), CgroupKey(4242, 1000, "node002")],
)
def test_v1_absent_job(tmp_path: Path, job: CgroupKey) -> None:
    v1_tree(tmp_path)
    assert find_job_cgroup(Cgroup(), tmp_path, job) is None


def test_v1_job_removed_mid_way(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    for controller in ("cpuacct", "memory", "cpuset"):
        shutil.rmtree(tmp_path / controller / "slurm_node001" / "uid_1000" / "job_4242")
    with pytest.raises(FileNotFoundError):
        found.read()


def test_v1_memory_below_the_cache_is_zero(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    write(tmp_path / "memory/slurm_node001/uid_1000/job_4242/memory.usage_in_bytes", "1000\n")
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().memory_bytes == 0


# -- cgroup v2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "name"),
    [
        ("slurmstepd.scope", "job_4242"),
        ("node001_slurmstepd.scope", "job_4242"),  # several slurmd on one host (multiple-slurmd)
        ("slurmstepd.scope", "s0KZ3M1Q7H2B4X"),  # 26.05 names job cgroups by SLUID
    ],
)
def test_v2_layouts(tmp_path: Path, scope: str, name: str) -> None:
    path = v2_tree(tmp_path, scope, name)
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert isinstance(found, cgroup_v2.V2JobCgroup)
    assert found.path == path
    assert found.read() == USAGE


def test_v2_sluid_directory_needs_the_sluid(tmp_path: Path) -> None:
    v2_tree(tmp_path, name="s0KZ3M1Q7H2B4X")
    assert find_job_cgroup(Cgroup(), tmp_path, CgroupKey(4242, 1000, "node001")) is None


def test_v2_configured_slice(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    (tmp_path / "system.slice").rename(tmp_path / "slurm.slice")
    assert find_job_cgroup(Cgroup(), tmp_path, JOB) is None
    found = find_job_cgroup(Cgroup(v2_slice="slurm.slice"), tmp_path, JOB)
    assert found is not None
    assert found.read() == USAGE


def test_v2_absent_job(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    assert find_job_cgroup(Cgroup(), tmp_path, CgroupKey(4243, 1000, "node001")) is None


def test_forced_version_is_obeyed(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    assert find_job_cgroup(Cgroup(version="v1"), tmp_path, JOB) is None
    assert find_job_cgroup(Cgroup(version="v2"), tmp_path, JOB) is not None


def test_v2_job_removed_mid_way(tmp_path: Path) -> None:
    path = v2_tree(tmp_path)
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    shutil.rmtree(path)
    with pytest.raises(FileNotFoundError):
        found.read()


def test_v2_without_the_cpuset_controller_has_no_cpus(tmp_path: Path) -> None:
    path = v2_tree(tmp_path)
    (path / "cpuset.cpus.effective").unlink()
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().cpus == frozenset()


def test_v2_memory_below_the_cache_is_zero(tmp_path: Path) -> None:
    path = v2_tree(tmp_path)
    write(path / "memory.current", "4096\n")
    assert cgroup_v2.V2JobCgroup(path).read().memory_bytes == 0


# -- what a job cgroup may lack (issue 13) ----------------------------------------------------------


def test_v2_cpuset_equal_to_the_scopes_does_not_confine_the_job(tmp_path: Path) -> None:
    path = v2_tree(tmp_path)
    write(path.parent / "cpuset.cpus.effective", "0-63\n")
    assert cgroup_v2.V2JobCgroup(path).read().cpus == CPUS  # ConstrainCores=yes: a subset
    write(path / "cpuset.cpus.effective", "0-63\n")  # ConstrainCores=no: the scope's, the whole node
    assert cgroup_v2.V2JobCgroup(path).read().cpus == frozenset()


def test_v1_cpuset_equal_to_slurms_top_directory_does_not_confine_the_job(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    write(tmp_path / "cpuset" / "slurm_node001" / "cpuset.effective_cpus", "0-63\n")
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().cpus == CPUS
    write(tmp_path / "cpuset/slurm_node001/uid_1000/job_4242/cpuset.effective_cpus", "0-63\n")
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().cpus == frozenset()


def test_v2_without_the_memory_controller_reads_cpu_and_no_memory(tmp_path: Path) -> None:
    path = v2_tree(tmp_path)
    (path / "memory.current").unlink()
    (path / "memory.stat").unlink()
    usage = cgroup_v2.V2JobCgroup(path).read()
    assert (usage.cpu_s, usage.memory_bytes, usage.cpus) == (USAGE.cpu_s, None, CPUS)


def test_v1_without_a_memory_cgroup_reads_no_memory(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    shutil.rmtree(tmp_path / "memory")
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().memory_bytes is None


# -- memory limit (what the job holds: docs/attribution.md, DRAM) ----------------------------------


@pytest.mark.parametrize(
    ("text", "held"),
    [("8589934592\n", 8 * 2**30), ("max\n", None), ("9223372036854771712\n", None), ("0\n", None)],
)
def test_memory_limit_values(text: str, held: int | None) -> None:
    assert memory_limit(text) == held


def test_v2_memory_max_is_the_held_memory(tmp_path: Path) -> None:
    job = v2_tree(tmp_path)
    write(job / "memory.max", "4294967296\n")
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().memory_limit_bytes == 4 * 2**30


def test_v2_without_memory_max_holds_no_limit(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().memory_limit_bytes is None


def test_v1_limit_in_bytes_is_the_held_memory(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    job = tmp_path / "memory" / "slurm_node001" / "uid_1000" / "job_4242"
    write(job / "memory.limit_in_bytes", "8589934592\n")
    found = find_job_cgroup(Cgroup(), tmp_path, JOB)
    assert found is not None
    assert found.read().memory_limit_bytes == 8 * 2**30
