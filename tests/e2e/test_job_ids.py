"""Slurm reuses job ids (issue 13, bug 2), on the real single-node Slurm 22.05: after a controller state
reset two users' jobs get the same id on the same node, and jobcarbon keeps both, each with its own user
and energy, and shows the newest with the other listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from slurm_plugin.storage import Store
from testbed.hardware import SimulatedHardware, fake_gpus
from testbed.host import REPO_ROOT, ensure_user, poll
from testbed.slurm import Cluster

pytestmark = pytest.mark.slurm

# Far above the ids the session's other tests get, and left behind for them to go on from.
REUSED_ID = 700_000
BURN = "end=$(( $(date +%s) + {s} )); while [ $(date +%s) -lt $end ]; do :; done"
GPU_POWER_W = {gpu.uuid: gpu.power_mw / 1000 for gpu in fake_gpus()}


def _stored_runs(cluster: Cluster, job_id: int) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    """Each stored job of the id with its one part's record, by job row; None until there are two."""
    store = Store.open(SimulatedHardware(cluster.scratch).database_url, 5.0, create=False)
    try:
        rows = store.db.execute(
            "SELECT j.run, j.user_name, p.id, p.total_j FROM jobs j JOIN job_parts p ON p.job = j.id"
            " WHERE j.cluster = 'testbed' AND j.job_id = ? ORDER BY j.id",
            [job_id],
        ).fetchall()
        found = [
            ({"run": run, "user": user, "total_j": total_j}, store.record(part_id))
            for run, user, part_id, total_j in rows
        ]
    finally:
        store.close()
    return found if len(found) == 2 else None


def _show(cluster: Cluster, *args: str) -> dict[str, Any]:
    """`jobcarbon ARGS --format json`, as root (who sees every job)."""
    env = {**os.environ, "JOBCARBON_CONFIG": str(cluster.jobcarbon_config), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "slurm_plugin", *args, "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _job_after_reset(cluster: Cluster, user: str, seconds: int) -> int:
    cluster.reset_controller(REUSED_ID)
    job_id = cluster.submit(BURN.format(s=seconds), user=user, account="physics", gres="gpu:1")
    assert cluster.wait_finished(job_id, timeout_s=120).state == "COMPLETED"
    return job_id


def test_two_users_given_one_id_after_a_controller_reset_are_two_jobs(
    slurm_cluster: Cluster, slurm_user: str, hook_runs
) -> None:
    ensure_user("jcbob")
    first = _job_after_reset(slurm_cluster, slurm_user, seconds=3)
    second = _job_after_reset(slurm_cluster, "jcbob", seconds=7)
    assert first == second == REUSED_ID  # the same id, on the same node
    assert [context for context, _ in hook_runs(REUSED_ID)] == ["prolog_slurmd", "epilog_slurmd"] * 2

    runs = poll(lambda: _stored_runs(slurm_cluster, REUSED_ID), 60, "both jobs in the database")
    (alice, alice_record), (bob, bob_record) = runs
    assert (alice["user"], bob["user"]) == (slurm_user, "jcbob")
    assert (alice_record["user"], bob_record["user"]) == (slurm_user, "jcbob")
    # Slurm 22.05 gives neither SLUID nor start time: each run is its prolog's second on this node.
    assert [alice["run"][:5], bob["run"][:5]] == ["seen:", "seen:"]
    assert alice["run"] != bob["run"]
    assert (alice_record["run"], bob_record["run"]) == (alice["run"], bob["run"])
    for stored, record in runs:
        assert stored["total_j"] == record["energy"]["total_joules"] > 0
        uuid = record["gpus"][0]["uuid"]
        rows = record["timeline"]["rows"]
        measured = record["energy"]["gpu"]["devices"][uuid]["joules"]
        assert measured == pytest.approx(GPU_POWER_W[uuid] * (rows[-1][1] - rows[0][0]), rel=0.02)
    assert bob_record["elapsed_s"] > alice_record["elapsed_s"] + 2  # 7 s against 3 s of work
    assert bob["total_j"] > alice["total_j"]
    assert not list((slurm_cluster.scratch / "outbox").glob(f"testbed_{REUSED_ID}_*.json"))
    assert not list((slurm_cluster.scratch / "quarantine").glob(f"*_{REUSED_ID}_*"))  # no conflict

    newest = _show(slurm_cluster, str(REUSED_ID))
    assert (newest["user"], newest["run"]) == ("jcbob", bob["run"])
    assert newest["energy"]["total_j"] == pytest.approx(bob["total_j"], abs=1e-3)
    assert [(o["run"], o["restart_count"]) for o in newest["other_runs"]] == [(alice["run"], 0)]
    older = _show(slurm_cluster, str(REUSED_ID), "--run", alice["run"])
    assert (older["user"], older["run"]) == (slurm_user, alice["run"])
    assert older["energy"]["total_j"] == pytest.approx(alice["total_j"], abs=1e-3)
    assert [o["run"] for o in older["other_runs"]] == [bob["run"]]
    assert slurm_cluster.node_state() == "idle"  # never drained
