"""RaplSensor against simulated powercap trees (testbed.powermodel builds them as the kernel does)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from slurm_plugin.node.counters import EnergyCounter
from slurm_plugin.sensors import rapl
from slurm_plugin.sensors.base import Status
from slurm_plugin.sensors.rapl import RaplSensor
from testbed.powermodel import build_powercap_tree, set_energy


def channels(sensor: RaplSensor) -> list[str]:
    return [zone.channel for zone in sensor.zones]


def zone(sensor: RaplSensor, channel: str) -> rapl.RaplZone:
    return next(z for z in sensor.zones if z.channel == channel)


def ignored(sensor: RaplSensor) -> dict[str, str]:
    return dict(sensor.ignored)


def test_zones_are_keyed_on_name_with_hex_ids_and_psys_at_index_1(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, packages=10, psys=True)
    sensor = RaplSensor(tmp_path)
    expected = [f"{kind}-{n}" for n in range(10) for kind in ("package", "dram")]
    assert channels(sensor) == expected
    assert zone(sensor, "package-1").path.name == "intel-rapl:2"
    assert zone(sensor, "package-9").path.name == "intel-rapl:a"
    assert zone(sensor, "dram-9").path.name == "intel-rapl:a:1"
    assert "platform" in ignored(sensor)["intel-rapl:1"]


def test_dram_is_a_subzone_reported_per_package(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, packages=2, max_energy_range_uj=65712999613, tdp_w=205.0)
    sensor = RaplSensor(tmp_path)
    dram = zone(sensor, "dram-1")
    assert (dram.name, dram.kind, dram.package, dram.path.name) == ("dram", "dram", 1, "intel-rapl:1:1")
    assert dram.max_energy_range_uj == 65712999613
    assert dram.tdp_w is None  # DRAM long_term limit is 0 (unset)
    package = zone(sensor, "package-1")
    assert (package.kind, package.tdp_w, package.control_type) == ("package", 205.0, "intel-rapl")


def test_multi_die_packages_keep_one_channel_per_die(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, packages=2)
    root = tmp_path / "class" / "powercap"
    (root / "intel-rapl:0" / "name").write_text("package-0-die-0\n")
    (root / "intel-rapl:1" / "name").write_text("package-0-die-1\n")
    sensor = RaplSensor(tmp_path)
    assert channels(sensor) == ["package-0-die-0", "package-0-die-1", "dram-0-die-0", "dram-0-die-1"]
    assert {z.package for z in sensor.zones} == {0}


def test_core_and_uncore_are_listed_but_not_summed(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, uncore=True)
    sensor = RaplSensor(tmp_path)
    assert channels(sensor) == ["package-0", "dram-0"]
    assert zone(sensor, "dram-0").path.name == "intel-rapl:0:2"
    assert ignored(sensor)["intel-rapl:0:0"].startswith("core: nested in package-0")
    assert ignored(sensor)["intel-rapl:0:1"].startswith("uncore: nested in package-0")


def test_mmio_duplicate_of_the_msr_package_is_ignored(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, mmio_duplicate=True)
    sensor = RaplSensor(tmp_path)
    assert channels(sensor) == ["package-0", "dram-0"]
    assert zone(sensor, "package-0").control_type == "intel-rapl"
    assert "intel-rapl zone" in ignored(sensor)["intel-rapl-mmio:0"]


CONTROL_TYPE_ZONES = {
    "intel-rapl": ["intel-rapl:0", "intel-rapl:0:0"],
    "intel-rapl-tpmi": ["intel-rapl-tpmi:0"],
    "intel-rapl-mmio": ["intel-rapl-mmio:0"],
}


@pytest.mark.parametrize(
    ("present", "used"),
    [
        (["intel-rapl-mmio"], "intel-rapl-mmio"),
        (["intel-rapl-mmio", "intel-rapl-tpmi"], "intel-rapl-tpmi"),
        (["intel-rapl", "intel-rapl-tpmi", "intel-rapl-mmio"], "intel-rapl"),
    ],
)
def test_one_control_type_per_package(tmp_path: Path, present: list[str], used: str) -> None:
    build_powercap_tree(tmp_path, dram=False, mmio_duplicate=True)
    root = tmp_path / "class" / "powercap"
    shutil.copytree(root / "intel-rapl-mmio:0", root / "intel-rapl-tpmi:0")
    for control, dirnames in CONTROL_TYPE_ZONES.items():
        for dirname in dirnames if control not in present else []:
            shutil.rmtree(root / dirname)
    sensor = RaplSensor(tmp_path)
    assert [(z.channel, z.control_type) for z in sensor.zones] == [("package-0", used)]
    assert len(sensor.ignored) == len(present) - 1 + ("intel-rapl" in present)  # + core


def test_amd_exposes_package_and_core_only(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, packages=2, amd=True, max_energy_range_uj=65532610987)
    sensor = RaplSensor(tmp_path)
    assert channels(sensor) == ["package-0", "package-1"]
    assert all(z.tdp_w is None and z.max_energy_range_uj == 65532610987 for z in sensor.zones)
    assert set(ignored(sensor)) == {"intel-rapl:0:0", "intel-rapl:1:0"}
    assert all(r.status is Status.OK for r in sensor.read())


def test_nested_devices_virtual_layout_without_class_links(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path / "flat", packages=2, psys=True)
    flat = tmp_path / "flat" / "class" / "powercap"
    virtual = tmp_path / "sys" / "devices" / "virtual" / "powercap" / "intel-rapl"
    for top in ("intel-rapl:0", "intel-rapl:1", "intel-rapl:2"):
        shutil.copytree(flat / top, virtual / top)
        for sub in flat.glob(f"{top}:*"):
            shutil.copytree(sub, virtual / top / sub.name)
    sensor = RaplSensor(tmp_path / "sys")
    assert channels(sensor) == ["package-0", "dram-0", "package-1", "dram-1"]
    assert zone(sensor, "dram-1").path == virtual / "intel-rapl:2" / "intel-rapl:2:1"


def test_read_returns_raw_microjoules_and_reopens_the_file(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path)
    sensor = RaplSensor(tmp_path)
    set_energy(tmp_path, "package-0", 1234)
    set_energy(tmp_path, "intel-rapl:0:1", 99)
    assert [(r.channel, r.value) for r in sensor.read()] == [("package-0", 1234), ("dram-0", 99)]
    set_energy(tmp_path, "package-0", 5678)  # replaced by rename: a new inode
    assert sensor.read()[0].value == 5678


def test_permission_denied_is_unreadable_and_does_not_hide_other_zones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_powercap_tree(tmp_path, packages=2)
    sensor = RaplSensor(tmp_path)
    real_read = rapl.read_int
    denied = zone(sensor, "package-0").path / "energy_uj"

    def read(path: Path | str) -> int:
        if Path(path) == denied:  # root ignores mode bits, so refuse here as a non-root agent would see it
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(rapl, "read_int", read)
    readings = {r.channel: r for r in sensor.read()}
    assert readings["package-0"].status is Status.UNREADABLE
    assert readings["package-0"].value is None
    assert "CVE-2020-8694" in readings["package-0"].reason
    assert all(readings[c].status is Status.OK for c in ("dram-0", "package-1", "dram-1"))
    probe = sensor.probe()
    assert probe.status is Status.OK
    assert "package-0" in probe.reason


def test_all_zones_unreadable_means_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_powercap_tree(tmp_path)
    sensor = RaplSensor(tmp_path)

    def deny(path: Path) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(rapl, "read_int", deny)
    probe = sensor.probe()
    assert probe.status is Status.UNREADABLE
    assert "root-only" in probe.reason


def test_other_errors_are_error_status(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, packages=2)
    sensor = RaplSensor(tmp_path)
    package0 = zone(sensor, "package-0").path / "energy_uj"
    package0.unlink()
    package0.mkdir()  # reading a directory: IsADirectoryError
    (zone(sensor, "dram-1").path / "energy_uj").write_text("\n")
    readings = {r.channel: r for r in sensor.read()}
    assert readings["package-0"].status is Status.ERROR
    assert str(package0) in readings["package-0"].reason
    assert readings["dram-1"].status is Status.ERROR
    assert readings["dram-0"].status is Status.OK
    assert readings["package-1"].status is Status.OK


def test_absent_powercap_means_no_zones_and_a_reason(tmp_path: Path) -> None:
    sensor = RaplSensor(tmp_path)
    assert sensor.zones == []
    assert sensor.read() == []
    probe = sensor.probe()
    assert probe.status is Status.ABSENT
    assert "no powercap zones" in probe.reason


def test_powercap_without_rapl_packages_says_what_was_skipped(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, psys=True)
    root = tmp_path / "class" / "powercap"
    for dirname in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"):
        shutil.rmtree(root / dirname)
    (root / "dtpm:0").mkdir()
    (root / "dtpm:0" / "name").write_text("soc\n")
    probe = RaplSensor(tmp_path).probe()
    assert probe.status is Status.ABSENT
    assert "psys" in probe.reason
    assert "dtpm" in probe.reason
    assert {f.detail.split(":")[0] for f in probe.findings} >= {"ignored dtpm"}


def test_counter_wraparound_gives_positive_delta(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, dram=False, max_energy_range_uj=1_000_000_000)
    sensor = RaplSensor(tmp_path)
    package = zone(sensor, "package-0")
    counter = EnergyCounter(1e-6, wrap=package.max_energy_range_uj, max_power_w=300.0)
    set_energy(tmp_path, "package-0", 999_000_000)
    assert counter.update(0.0, sensor.read()[0].value) is None
    set_energy(tmp_path, "package-0", 149_000_000)
    delta = counter.update(1.0, sensor.read()[0].value)
    assert delta is not None
    assert delta.joules == pytest.approx(150.0)


def test_implausible_jump_is_a_gap_not_a_negative(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, dram=False)
    sensor = RaplSensor(tmp_path)
    package = zone(sensor, "package-0")
    counter = EnergyCounter(1e-6, wrap=package.max_energy_range_uj, max_power_w=2 * package.tdp_w)
    set_energy(tmp_path, "package-0", 200_000_000_000)
    counter.update(0.0, sensor.read()[0].value)
    set_energy(tmp_path, "package-0", 1_000)  # counter reset (driver reload): not a 62 kJ wrap
    assert counter.update(1.0, sensor.read()[0].value) is None
    assert counter.resets == 1
    set_energy(tmp_path, "package-0", 100_001_000)
    delta = counter.update(2.0, sensor.read()[0].value)
    assert delta is not None
    assert delta.joules == pytest.approx(100.0)
