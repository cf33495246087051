"""The node agent with several jobs: shared ticks, attribution, restart and adoption."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.simnode import NODE, SimNode, wait_for


@pytest.fixture
def node(tmp_path: Path):
    sim = SimNode(tmp_path, interval_s=0.1)
    yield sim
    sim.stop_agent()


def _run_two_jobs(node: SimNode) -> tuple[dict, dict, float, float]:
    node.set_rapl(1000.0, 100.0)
    node.job_cgroup(21, uid=1000, cpus="0", mem=4 * 2**30)
    node.job_cgroup(22, uid=1001, cpus="1", mem=1 * 2**30)
    node.hook("prolog", 21)
    node.hook("prolog", 22, SLURM_JOB_UID="1001")
    wait_for(lambda: node.intervals(22) >= 1, what="second job sampled")
    package, dram, burner_cpu = 1000.0, 100.0, 0.0
    for _ in range(10):
        seen = node.intervals(22)
        package, dram, burner_cpu = package + 50.0, dram + 5.0, burner_cpu + 0.09
        node.set_rapl(package, dram)
        node.job_cgroup(21, uid=1000, cpus="0", cpu_s=burner_cpu, mem=4 * 2**30)
        wait_for(lambda s=seen: node.intervals(22) > s, what="next interval")
    node.hook("epilog", 21)
    node.hook("epilog", 22, SLURM_JOB_UID="1001")
    burner, sleeper = node.record(21), node.record(22)
    assert burner is not None
    assert sleeper is not None
    return burner, sleeper, package - 1000.0, dram - 100.0


# Records keep joules to the millijoule (intervals to 0.1 mJ), so two jobs may read up to ~2 mJ
# over the node's counter by rounding alone: 489.999 + 10.002 against 500 J was seen.
ROUNDING_J = 2e-3


def test_burner_gets_more_cpu_energy_and_jobs_never_exceed_the_node(node: SimNode) -> None:
    burner, sleeper, package_j, dram_j = _run_two_jobs(node)
    burner_cpu, sleeper_cpu = burner["energy"]["cpu"]["joules"], sleeper["energy"]["cpu"]["joules"]
    assert burner_cpu > 2 * sleeper_cpu
    assert burner_cpu + sleeper_cpu <= package_j + ROUNDING_J
    burner_dram, sleeper_dram = burner["energy"]["dram"]["joules"], sleeper["energy"]["dram"]["joules"]
    assert burner_dram + sleeper_dram <= dram_j + ROUNDING_J
    assert burner_dram == pytest.approx(4 * sleeper_dram, rel=0.05)
    assert burner["energy"]["cpu"]["method"] == "apportioned"
    assert burner["status"] == sleeper["status"] == "complete"


def test_records_validate_against_the_schema(node: SimNode) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import json

    schema = json.loads((Path(__file__).parents[2] / "slurm_plugin" / "record_schema.json").read_text())
    for record in _run_two_jobs(node)[:2]:
        jsonschema.Draft202012Validator(schema).validate(record)


def test_killed_agent_is_restarted_by_the_next_prolog_and_resumes_jobs(node: SimNode) -> None:
    node.job_cgroup(31)
    node.hook("prolog", 31)
    wait_for(lambda: node.intervals(31) >= 1, what="first job sampled")
    first = node.agent_pid()
    assert first is not None
    os.kill(first, 9)
    wait_for(lambda: node.agent_pid() is None, what="agent gone")
    node.hook("prolog", 32)
    wait_for(lambda: node.agent_pid() not in (None, first), what="new agent")
    seen = node.intervals(31)
    wait_for(lambda: node.intervals(31) > seen, what="job 31 resumed")
    node.hook("epilog", 31)
    node.hook("epilog", 32)
    resumed, fresh = node.record(31), node.record(32)
    assert resumed is not None
    assert fresh is not None
    assert resumed["status"] == "partial"
    assert any("sampler restarted" in reason for reason in resumed["partial_reasons"])
    assert fresh["status"] == "complete"


def test_concurrent_prologs_share_one_agent(node: SimNode) -> None:
    threads = [threading.Thread(target=node.hook, args=("prolog", 40 + i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: all(node.intervals(40 + i) >= 1 for i in range(8)), what="all jobs sampled")
    from slurm_plugin.node.agent_client import request

    status = request(node.spool / "agent.sock", {"op": "status"}, 2.0)
    assert status["jobs"] == sorted(f"{40 + i}.0" for i in range(8))
    for i in range(8):
        node.hook("epilog", 40 + i)
    assert all(node.record(40 + i) for i in range(8))
    wait_for(lambda: node.agent_pid() is None, what="agent exits when no job is left")
    assert not list((node.spool / "jobs").iterdir())


def test_spawned_agent_starts_sampling_without_waiting_an_interval(tmp_path: Path) -> None:
    node = SimNode(tmp_path, interval_s=300)
    try:
        node.hook("prolog", 50)
        header = wait_for(lambda: node.journal(50), timeout_s=10, what="journal header")[0]
        assert header["type"] == "header"
        assert header["first_sample"] >= header["start"]
    finally:
        node.stop_agent()


def test_gpu_job_energy_follows_programmed_power_across_a_counter_reset(tmp_path: Path) -> None:
    from dataclasses import replace

    from testbed.nvml_standin import CONFIG_NAME, FakeGpu, build, write_config

    library = build(tmp_path / "nvml")
    gpu = FakeGpu("GPU-00000000-0000-4000-8000-0000000000aa", minor=0, pci_bus_id="00000000:17:00.0")
    write_config(library.parent / CONFIG_NAME, [replace(gpu, power_mw=250_000)])
    nvml = f"nvml:\n  library: {library}\n  counter_interval_s: 0.3\n"
    node = SimNode(tmp_path / "node", interval_s=0.1, extra_config=nvml)
    try:
        node.hook("prolog", 60, SLURM_JOB_GPUS="0")
        wait_for(lambda: node.intervals(60) >= 3, what="GPU samples")
        write_config(library.parent / CONFIG_NAME, [replace(gpu, power_mw=250_000)])  # driver reload
        seen = node.intervals(60)
        wait_for(lambda: node.intervals(60) >= seen + 3, what="samples after the reset")
        node.hook("epilog", 60, SLURM_JOB_GPUS="0")
    finally:
        node.stop_agent()
    record = node.record(60)
    assert record is not None
    assert record["gpus"][0]["uuid"] == gpu.uuid
    rows = record["timeline"]["rows"]
    device = record["energy"]["gpu"]["devices"][gpu.uuid]
    assert device["joules"] == pytest.approx(250 * (rows[-1][1] - rows[0][0]), rel=0.02)
    assert "integrated" in device["by_method"]
    assert any("energy counter reset" in note for note in record["notes"])


def test_running_jobs_publish_snapshots_that_the_final_record_replaces(tmp_path: Path) -> None:
    import json

    node = SimNode(tmp_path, interval_s=0.1)
    text = node.config.read_text()
    node.config.write_text(text.replace("sampler:\n", "sampler:\n  snapshot_interval_s: 0.3\n"))

    def running() -> list[Path]:  # named after the run (the prolog's time, as Slurm 22.05 gives no other)
        return list((node.outbox / "running").glob(f"sim_70_0_{NODE}_seen-*.json"))

    try:
        node.job_cgroup(70)
        node.hook("prolog", 70)
        wait_for(lambda: bool(running()), what="a running snapshot")
        snapshot = json.loads(running()[0].read_text())
        assert snapshot["status"] == "running"
        assert snapshot["coverage"]["samples"] >= 1
        node.hook("epilog", 70)
    finally:
        node.stop_agent()
    assert node.record(70)["status"] == "complete"
    assert not running()


def test_a_job_from_before_a_reboot_is_closed_as_partial(node: SimNode) -> None:
    import json

    node.job_cgroup(80)
    node.hook("prolog", 80)
    wait_for(lambda: node.intervals(80) >= 2, what="samples")
    node.stop_agent()
    job_file = node.spool / "jobs" / "80.0" / "job.json"
    data = json.loads(job_file.read_text())
    job_file.write_text(json.dumps({**data, "boot_id": "00000000-0000-0000-0000-000000000000"}))
    node.hook("prolog", 81)  # the first job after the reboot starts a new agent
    record = wait_for(lambda: node.record(80), what="the pre-reboot job's record")
    assert record["status"] == "partial"
    assert "the node rebooted during the job" in record["partial_reasons"]
    assert record["coverage"]["samples"] >= 2
    node.hook("epilog", 81)


def _gpu_node(tmp_path: Path, gpus: int, nvml_settings: str = "", **standin: Any) -> tuple[SimNode, Path]:
    """A simulated node whose agent loads the NVML stand-in with `gpus` GPUs; returns it and the
    stand-in's config path."""
    from testbed.nvml_standin import CONFIG_NAME, FakeGpu, build, write_config

    library = build(tmp_path / "nvml")
    devices = [
        FakeGpu(f"GPU-{i:08x}-0000-4000-8000-{i:012x}", minor=i, pci_bus_id=f"00000000:{0x18 + i:02X}:00.0")
        for i in range(gpus)
    ]
    write_config(library.parent / CONFIG_NAME, devices, **standin)
    nvml = f"nvml:\n  library: {library}\n{nvml_settings}"
    return SimNode(tmp_path / "node", interval_s=0.1, extra_config=nvml), library.parent / CONFIG_NAME


def test_hooks_answer_before_the_agent_reads_any_gpu_energy_counter(tmp_path: Path) -> None:
    from testbed.nvml_standin import ENERGY_CALL, call_counts

    calls = tmp_path / "calls"  # each counter read burns 0.4 s: a hook that waited would see it counted
    node, _ = _gpu_node(tmp_path, 2, costs={ENERGY_CALL: 400_000}, calls_file=calls)
    try:
        node.hook("prolog", 70)  # a CPU job keeps the agent running, as on a busy node
        wait_for(lambda: node.journal(70), what="the agent")
        node.hook("prolog", 71, SLURM_JOB_GPUS="0,1")
        assert call_counts(calls).get(ENERGY_CALL, 0) == 0
        wait_for(lambda: call_counts(calls).get(ENERGY_CALL) == 2, what="the start anchors")
        header = node.journal(71)[0]
        node.hook("epilog", 71, SLURM_JOB_GPUS="0,1")
        assert call_counts(calls)[ENERGY_CALL] == 2
        record = node.record(71)
        node.hook("epilog", 70)
    finally:
        node.stop_agent()
    assert call_counts(calls)[ENERGY_CALL] == 4  # the end anchors, after the epilog had its answer
    assert record is not None
    assert [gpu["uuid"] for gpu in header["gpus"]] == [gpu["uuid"] for gpu in record["gpus"]]
    assert record["energy"]["gpu"]["method"] == "measured"
    rows = record["timeline"]["rows"]
    assert record["energy"]["gpu"]["joules"] == pytest.approx(2 * 100 * (rows[-1][1] - rows[0][0]), rel=0.02)


class BurstyGpu(threading.Thread):
    """Programs the stand-in's GPU 0 with 650 W bursts over a 90 W floor, keeping its counter continuous,
    and remembers every change so the test knows the counter at any moment."""

    def __init__(self, config: Path, gpu: Any, start_s: float):
        super().__init__(daemon=True)
        self.config, self.gpu = config, gpu
        self.changes = [(start_s, 0, gpu.power_mw)]  # (time, counter then in mJ, power from then in mW)
        self.halt = threading.Event()

    def counter_mj(self, t: float) -> float:
        since, offset, power = next(change for change in reversed(self.changes) if change[0] <= t)
        return offset + power * (t - since)

    def set_power(self, power_mw: int) -> None:
        from dataclasses import replace

        from testbed.nvml_standin import write_config

        now = time.time()
        offset = int(self.counter_mj(now))
        programmed = replace(self.gpu, power_mw=power_mw, energy_offset_mj=offset)
        write_config(self.config, [programmed], epoch_s=now)
        self.changes.append((now, offset, power_mw))

    def run(self) -> None:
        high = False
        while not self.halt.wait(0.13):
            high = not high
            self.set_power(650_000 if high else 90_000)
        self.set_power(200_000)


def test_anchored_gpu_energy_equals_the_counter_delta_under_a_bursty_load(tmp_path: Path) -> None:
    from testbed.nvml_standin import FakeGpu, write_config

    node, config = _gpu_node(tmp_path, 1, "  counter_interval_s: 0.5\n")
    gpu = FakeGpu("GPU-00000000-0000-4000-8000-000000000000", 0, "00000000:18:00.0", power_mw=200_000)
    load = BurstyGpu(config, gpu, write_config(config, [gpu]))
    try:
        node.hook("prolog", 72, SLURM_JOB_GPUS="0")
        header = wait_for(lambda: node.journal(72), what="journal header")[0]
        time.sleep(0.3)  # the edges are steady: a hook's GPU reading is moved back by the power then
        load.start()
        wait_for(lambda: node.intervals(72) >= 25, what="samples through the bursts")
        load.halt.set()
        load.join()
        time.sleep(0.3)
        node.hook("epilog", 72, SLURM_JOB_GPUS="0")
        record = node.record(72)
    finally:
        node.stop_agent()
    assert record is not None
    rows = record["timeline"]["rows"]
    first, last = header["start"] + rows[0][0], header["start"] + rows[-1][1]
    truth_j = (load.counter_mj(last) - load.counter_mj(first)) / 1000
    gpu_energy = record["energy"]["gpu"]
    assert gpu_energy["joules"] == pytest.approx(truth_j, rel=0.005)
    assert gpu_energy["method"] == "measured"
    assert len(load.changes) > 10  # bursts, not a steady load


def test_stops_that_arrive_together_make_one_tick(tmp_path: Path) -> None:
    import socket

    from slurm_plugin import config as config_module
    from slurm_plugin.node.agent import Agent

    node = SimNode(tmp_path, interval_s=60)
    agent = Agent(config_module.load(node.config), lambda level, text: None)
    agent._listen()

    def send_all(op: str, job_ids: range) -> list[dict[str, Any]]:
        """Queue one hook message per job on the agent's socket, serve them in one round, read replies."""
        clients = []
        for job_id in job_ids:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(str(node.spool / "agent.sock"))
            env = {k: v for k, v in node.env(job_id).items() if k.startswith("SLURM")}
            client.sendall(json.dumps({"op": op, "env": env}).encode() + b"\n")
            clients.append(client)
        agent._serve()
        replies = []
        for client in clients:
            with client:
                replies.append(json.loads(client.makefile().readline()))
        return replies

    ticks: list[float] = []
    real_tick = agent.sampler.tick
    agent.sampler.tick = lambda *a, **k: ticks.append(real_tick(*a, **k)) or ticks[-1]  # type: ignore[method-assign]
    try:
        assert all(reply["ok"] for reply in send_all("prolog", range(100, 132)))
        assert len(ticks) == 1  # the starts share one tick too
        assert sorted(agent.sampler.jobs) == sorted(f"{i}.0" for i in range(100, 132))
        assert all(reply["ok"] for reply in send_all("epilog", range(100, 132)))
        assert len(ticks) == 2
        assert not agent.sampler.jobs
        assert len(list(node.outbox.glob("*.json"))) == 32
    finally:
        agent._close()


def test_a_gpu_without_an_energy_counter_integrates_power(tmp_path: Path) -> None:
    from testbed.nvml_standin import ENERGY_CALL, FakeGpu, call_counts, write_config

    calls = tmp_path / "calls"
    node, config = _gpu_node(tmp_path, 1, "  counter_interval_s: 0.2\n")
    old = FakeGpu("GPU-00000000-0000-4000-8000-000000000000", 0, "00000000:18:00.0", energy_supported=False)
    write_config(config, [old], calls_file=calls)
    try:
        node.hook("prolog", 73, SLURM_JOB_GPUS="0")
        wait_for(lambda: node.intervals(73) >= 10, what="samples")
        node.hook("epilog", 73, SLURM_JOB_GPUS="0")
        record = node.record(73)
    finally:
        node.stop_agent()
    assert record is not None
    rows = record["timeline"]["rows"]
    assert record["energy"]["gpu"]["method"] == "integrated"
    assert record["energy"]["gpu"]["joules"] == pytest.approx(100 * (rows[-1][1] - rows[0][0]), rel=0.01)
    assert call_counts(calls)[ENERGY_CALL] == 1  # NotSupported is a capability: asked once
