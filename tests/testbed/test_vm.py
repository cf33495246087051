"""The VM bed's pieces that need no VM: kernel options, node identities, Slurm's config, the agent's
answers and the mirror lookup (testbed/vm/, testbed/vmguest.py)."""

from __future__ import annotations

from pathlib import Path

from testbed import vmguest
from testbed.hardware import GPU_POWER_W
from testbed.vm import config, image


def test_kernel_options_keep_only_the_beds_own() -> None:
    cmdline = "root=/dev/vda rw jcvm.addr=10.77.0.2/24 jcvm.compute=1 systemd.hostname=vm2 jcvm.gpus=2\n"
    assert vmguest.kernel_options(cmdline) == {"addr": "10.77.0.2/24", "compute": "1", "gpus": "2"}


def test_each_nodes_gpus_have_their_own_uuids_and_the_gres_minors() -> None:
    vm2, vm3 = vmguest.node_gpus(2, 2), vmguest.node_gpus(3, 2)
    assert [gpu.minor for gpu in vm2] == [100, 101]
    assert [gpu.power_mw for gpu in vm2] == [GPU_POWER_W[0] * 1000, GPU_POWER_W[1] * 1000]
    assert len({gpu.uuid for gpu in vm2 + vm3}) == 4
    assert vm3[1].uuid.endswith("03001")  # node index, then GPU index: the tests read the power from it


def test_slurm_conf_is_cgroup_v2_with_jobcarbons_hooks_on_the_compute_nodes() -> None:
    conf = config.slurm_conf()
    assert "ProctrackType=proctrack/cgroup\n" in conf
    assert "Prolog=/usr/lib/jobcarbon/jobcarbon-prolog\n" in conf
    assert "NodeName=vm[2-3] CPUs=2 " in conf
    assert f"Gres=gpu:h100:{config.GPUS_PER_NODE}" in conf
    assert config.CGROUP_CONF.startswith("CgroupPlugin=cgroup/v2\n")


def test_the_agent_reports_status_and_output_and_stops_a_command_at_its_timeout() -> None:
    done = vmguest.answer({"id": "a", "sh": "echo out; echo err >&2; exit 3"})
    assert done == {"id": "a", "rc": 3, "out": "out\n", "err": "err\n"}
    slow = vmguest.answer({"id": "b", "sh": "sleep 5", "timeout": 0.2})
    assert (slow["id"], slow["rc"]) == ("b", 124)


def test_the_mirror_is_this_machines_debian_mirror(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert image.debian_mirror(sources) == "http://mirror.example/debian"
    assert image.debian_mirror(tmp_path / "missing") == "http://deb.debian.org/debian"
