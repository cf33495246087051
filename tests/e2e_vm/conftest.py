"""Fixtures for end-to-end tests on the three-node Slurm 24.11 cluster in VMs (testbed/vm.py).

The bed boots three emulated machines (minutes on two CPUs), so it runs only when asked:
JOBCARBON_VM=1, or JOBCARBON_REQUIRE_VM=1 (CI), under which a machine that cannot run it fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from slurm_plugin.storage import Store
from testbed import vm
from testbed.host import ClusterError, poll

REQUIRE_ENV = "JOBCARBON_REQUIRE_VM"
OPT_IN_ENV = "JOBCARBON_VM"


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
        bed.down()


@pytest.fixture(autouse=True)
def no_node_drained(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each scenario, both compute nodes are back to idle: none drained or down."""
    yield
    if "vm_bed" not in request.fixturenames:
        return
    bed: vm.VmCluster = request.getfixturevalue("vm_bed")
    try:
        bed.wait_idle(vm.COMPUTE, 120)
    except ClusterError as error:
        pytest.fail(f"compute nodes not idle after the scenario: {error}", pytrace=False)


def stored_records(bed: vm.VmCluster, job_ids: set[int], count: int) -> list[dict[str, Any]]:
    """Collect and ingest the nodes' records until `count` parts of these jobs are stored; return
    their records (as received) ordered by job id and node."""

    def found() -> list[dict[str, Any]] | None:
        mine = [record for record in ingested_records(bed) if record["job_id"] in job_ids]
        return sorted(mine, key=lambda r: (r["job_id"], r["node"])) if len(mine) >= count else None

    return poll(found, 120, f"{count} record(s) of jobs {sorted(job_ids)}")


def ingested_records(bed: vm.VmCluster) -> list[dict[str, Any]]:
    """Collect and ingest the nodes' records; every stored record (as received), in storing order."""
    bed.ingest()
    store = Store.open(f"sqlite:///{bed.database}", 5.0, create=False)
    try:
        return [store.record(part_id) for part_id in store.parts()]
    finally:
        store.close()


def summary(bed: vm.VmCluster, job: str) -> dict[str, Any]:
    """`jobcarbon show JOB --json` on the host, from the bed's database."""
    done = bed.jobcarbon("show", job, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
