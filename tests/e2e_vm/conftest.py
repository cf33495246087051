"""Fixtures for end-to-end tests on the three-node Slurm 24.11 cluster in VMs (testbed/vm/).

The bed boots three emulated machines (minutes on two CPUs), so it runs only when asked:
JOBCARBON_VM=1, or JOBCARBON_REQUIRE_VM=1 (CI), under which a machine that cannot run it fails and so
does any scenario that skips. The bed boots once per session; scenarios that change Slurm's
settings put them back, and after each scenario both compute nodes must be idle (none drained).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from typing import Any

import pytest

from slurm_plugin.storage import Store
from testbed import vm
from testbed.hardware import GPU_POWER_W
from testbed.host import ClusterError, poll

REQUIRE_ENV = "JOBCARBON_REQUIRE_VM"
OPT_IN_ENV = "JOBCARBON_VM"
BURN = "end=$(( $(date +%s) + {s} )); while [ $(date +%s) -lt $end ]; do :; done"
VM2, VM3 = vm.COMPUTE


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (JOBCARBON_REQUIRE_VM=1) a VM scenario that skips fails: the suite must cover them all."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(REQUIRE_ENV) != "1" or not report.skipped or item.get_closest_marker("vm") is None:
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"{REQUIRE_ENV}=1 but the scenario was skipped: {reason}"


@pytest.fixture(scope="session")
def vm_bed() -> Iterator[vm.VmCluster]:
    """The VM cluster, up for the whole session, powered off at the end."""
    required = os.environ.get(REQUIRE_ENV) == "1"
    reason = vm.unavailable_reason()
    if reason is None and not required and os.environ.get(OPT_IN_ENV) != "1":
        reason = f"the VM bed boots three emulated machines: set {OPT_IN_ENV}=1 to run it"
    if reason is not None:
        if required:
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    bed = vm.VmCluster()
    bed.up(vm.build_image())
    try:
        yield bed
    finally:
        bed.down(timeout_s=0)  # the next session boots fresh overlays: no clean poweroff needed


@pytest.fixture(autouse=True)
def no_node_drained(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each scenario (and its fixtures' clean-up), both compute nodes are back to idle in
    `sinfo`: none drained or down."""
    yield
    if "vm_bed" not in request.fixturenames:
        return
    bed: vm.VmCluster = request.getfixturevalue("vm_bed")
    try:
        bed.wait_idle(vm.COMPUTE, 120)
    except ClusterError as error:
        pytest.fail(f"compute nodes not idle after the scenario: {error}", pytrace=False)


def later_scenarios(request: pytest.FixtureRequest) -> bool:
    """Whether scenarios run after this one in the session (so changed settings must be put back)."""
    items = request.session.items
    return items.index(request.node) < len(items) - 1


def wrap(command: str) -> str:
    return f"--wrap {shlex.quote(command)}"


def sampled_s(record: dict[str, Any]) -> float:
    rows = record["timeline"]["rows"]
    return rows[-1][1] - rows[0][0]


def assert_gpu_energy_is_power_times_time(record: dict[str, Any]) -> None:
    """Each fake GPU i draws GPU_POWER_W[i] watts all the time: measured energy is that × sampled time."""
    for gpu in record["gpus"]:
        measured = record["energy"]["gpu"]["devices"][gpu["uuid"]]
        assert measured["method"] == "measured"
        watts = GPU_POWER_W[int(gpu["uuid"][-3:])]
        assert measured["joules"] == pytest.approx(watts * sampled_s(record), rel=0.02)


def wait_sampling(bed: vm.VmCluster, node: vm.Node, key: str, timeout_s: float = 180) -> None:
    """Wait until the node's agent has started sampling the job run `key` ("<id>.<restart>")."""
    poll(lambda: bed.log_has(node, f"job {key}: sampling started") or None, timeout_s, f"sampling of {key}")


def wait_no_agent(bed: vm.VmCluster, node: vm.Node, timeout_s: float = 120) -> None:
    """Wait until no node agent runs on `node` (an agent leaves once it has no job left)."""
    poll(lambda: None if bed.agent_pids(node) else True, timeout_s, f"{node.name}'s agent to exit")


def truth_j(bed: vm.VmCluster, node: vm.Node) -> dict[str, float]:
    """The node's simulated RAPL ground truth: cumulative joules per channel."""
    return json.loads(bed.run(node, "cat /var/lib/jcvm/power-truth.json").stdout)["joules"]


def stored_records(bed: vm.VmCluster, job_ids: set[int], count: int) -> list[dict[str, Any]]:
    """Collect and ingest the nodes' records until `count` parts of these jobs are stored; return
    their records (as received) ordered by job id, restart count and node."""

    def found() -> list[dict[str, Any]] | None:
        mine = [record for record in ingested_records(bed) if record["job_id"] in job_ids]
        key = lambda r: (r["job_id"], r["restart_count"], r["node"])  # noqa: E731
        return sorted(mine, key=key) if len(mine) >= count else None

    return poll(found, 120, f"{count} record(s) of jobs {sorted(job_ids)}")


def ingested_records(bed: vm.VmCluster) -> list[dict[str, Any]]:
    """Collect and ingest the nodes' records; every stored record (as received), in storing order."""
    bed.ingest()
    store = Store.open(f"sqlite:///{bed.database}", 5.0, create=False)
    try:
        return [store.record(part_id) for part_id in store.parts()]
    finally:
        store.close()


def summary(bed: vm.VmCluster, job: str, *options: str) -> dict[str, Any]:
    """`jobcarbon show JOB --json` on the host, from the bed's database."""
    done = bed.jobcarbon("show", job, *options, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
