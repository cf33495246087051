"""The power-model simulator: integration, wraparound and ground truth, stepped without a clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_plugin.node.counters import EnergyCounter
from slurm_plugin.sensors.rapl import RaplSensor
from testbed.powermodel import (
    PowerModel,
    Simulator,
    build_powercap_tree,
    busy_fraction,
    main,
    read_cpu_jiffies,
    set_energy,
    zone_channels,
)

REPO = Path(__file__).resolve().parents[2]
MODEL = PowerModel(idle_w=40.0, max_w=140.0, dram_idle_w=4.0, dram_max_w=12.0, platform_w=30.0)


def energy_uj(sysfs: Path, dirname: str) -> int:
    return int((sysfs / "class" / "powercap" / dirname / "energy_uj").read_text())


def test_model_is_linear_in_utilisation_and_clamped() -> None:
    assert MODEL.package_w(0.0) == 40.0
    assert MODEL.package_w(0.25) == 65.0
    assert MODEL.package_w(1.7) == 140.0
    assert MODEL.dram_w(-1.0) == 4.0
    watts = MODEL.channel_w(["package-0", "core-0", "dram-0", "package-1", "psys"], 1.0)
    assert watts["core-0"] == pytest.approx(140.0 * MODEL.core_share)
    assert watts["psys"] == pytest.approx(140.0 + 12.0 + 140.0 + 30.0)


def test_step_integrates_power_over_time(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path)
    start = energy_uj(tmp_path, "intel-rapl:0")
    simulator = Simulator(tmp_path, model=MODEL)
    simulator.step(0.5, 2.0)  # 90 W for 2 s
    simulator.step(1.0, 3.0)  # 140 W for 3 s
    assert simulator.total_j["package-0"] == pytest.approx(180.0 + 420.0)
    assert simulator.total_j["dram-0"] == pytest.approx(8.0 * 2 + 12.0 * 3)
    assert energy_uj(tmp_path, "intel-rapl:0") == start + 600_000_000
    assert simulator.elapsed_s == 5.0


def test_counters_wrap_at_the_configured_range(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, dram=False, max_energy_range_uj=1_000_000_000)
    set_energy(tmp_path, "package-0", 900_000_000)
    simulator = Simulator(tmp_path, model=MODEL, ground_truth=tmp_path / "truth.json")
    simulator.step(1.0, 10.0)  # 1400 J past 900 J of a 1000 J range
    assert energy_uj(tmp_path, "intel-rapl:0") == 300_000_000
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["wraps"]["package-0"] == 2


def test_ground_truth_matches_the_simulated_counters(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, packages=2, psys=True)
    truth_file = tmp_path / "truth.json"
    simulator = Simulator(tmp_path, model=MODEL, ground_truth=truth_file)
    simulator.step(0.0, 1.0)
    simulator.step(1.0, 1.0)
    truth = json.loads(truth_file.read_text())
    assert truth["version"] == 1
    assert truth["elapsed_s"] == 2.0
    assert truth["joules"]["package-1"] == pytest.approx(40.0 + 140.0)
    assert truth["node_j"] == pytest.approx(2 * 180.0 + 2 * 16.0)
    assert truth["joules"]["psys"] == pytest.approx(truth["node_j"] + 60.0)
    assert truth["time_utc"].endswith("+00:00")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_sensor_and_counters_recover_ground_truth_across_wraps(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, packages=2, max_energy_range_uj=500_000_000)
    simulator = Simulator(tmp_path, model=MODEL)
    sensor = RaplSensor(tmp_path)
    counters = {
        z.channel: EnergyCounter(1e-6, wrap=z.max_energy_range_uj, max_power_w=2 * z.tdp_w)
        if z.tdp_w
        else EnergyCounter(1e-6, wrap=z.max_energy_range_uj)
        for z in sensor.zones
    }
    measured = dict.fromkeys(counters, 0.0)
    for tick, busy in enumerate([0.1, 0.9, 1.0, 0.3, 0.0, 1.0, 0.6, 0.8]):
        if tick:
            simulator.step(busy, 3.0)  # up to 420 J per step on a 500 J range: one wrap at most
        for reading in sensor.read():
            delta = counters[reading.channel].update(tick * 3.0, reading.value)
            measured[reading.channel] += delta.joules if delta else 0.0
    for channel, joules in measured.items():
        assert joules == pytest.approx(simulator.total_j[channel], abs=1e-5)
    truth = simulator.truth(0.0)
    assert sum(measured.values()) == pytest.approx(truth["node_j"], abs=1e-4)
    assert truth["wraps"]["package-0"] >= 2


def test_mirrored_zones_follow_the_same_counter(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path, mmio_duplicate=True)
    assert len(zone_channels(tmp_path)["package-0"]) == 2
    set_energy(tmp_path, "package-0", 42)
    Simulator(tmp_path, model=MODEL).step(0.0, 1.0)
    assert energy_uj(tmp_path, "intel-rapl:0") == energy_uj(tmp_path, "intel-rapl-mmio:0")


def test_set_energy_rejects_unknown_zones(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path)
    with pytest.raises(KeyError, match="dram-7"):
        set_energy(tmp_path, "dram-7", 1)


def write_stat(procfs: Path, user: int, idle: int) -> None:
    procfs.mkdir(exist_ok=True)
    line = f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {user} 0 0 {idle} 0 0 0 0 0 0\n"
    (procfs / "stat").write_text(line + "intr 1\n")


def test_busy_fraction_comes_from_proc_stat_deltas(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path)
    procfs = tmp_path / "proc"
    write_stat(procfs, user=100, idle=900)
    simulator = Simulator(tmp_path, procfs=procfs, model=MODEL)
    assert simulator.sample_busy() == 0.0
    write_stat(procfs, user=175, idle=925)
    assert simulator.sample_busy() == pytest.approx(0.75)
    assert simulator.sample_busy() == 0.0  # no time passed
    assert busy_fraction((0, 0), read_cpu_jiffies(Path("/proc"))) <= 1.0


def test_sigterm_requests_a_clean_stop(tmp_path: Path) -> None:
    build_powercap_tree(tmp_path)
    simulator = Simulator(tmp_path, model=MODEL)
    saved = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        simulator.stop_on_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        assert simulator.stopping
        assert simulator.run() == 0
    finally:
        signal.signal(signal.SIGTERM, saved[0])
        signal.signal(signal.SIGINT, saved[1])


def test_cli_builds_and_runs_a_bounded_number_of_periods(tmp_path: Path) -> None:
    sysfs, truth = tmp_path / "sys", tmp_path / "truth.json"
    assert main(["build", "--sysfs", str(sysfs), "--packages", "2", "--no-dram"]) == 0
    assert [z.channel for z in RaplSensor(sysfs).zones] == ["package-0", "package-1"]
    command = [sys.executable, "-m", "testbed.powermodel", "run", "--build", "--sysfs", str(sysfs)]
    command += ["--packages", "2", "--ground-truth", str(truth), "--period", "0.01", "--periods", "2"]
    subprocess.run(command, cwd=REPO, check=True, timeout=60)
    result = json.loads(truth.read_text())
    assert result["elapsed_s"] > 0
    assert set(result["joules"]) == {"package-0", "core-0", "dram-0", "package-1", "core-1", "dram-1"}


def test_refuses_to_write_into_the_real_sysfs() -> None:
    with pytest.raises(ValueError, match="real sysfs"):
        build_powercap_tree(Path("/sys"))
