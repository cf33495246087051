"""The node ledger on the real single-node Slurm: two real jobs side by side, the agent's node record
delivered to the database, and per interval Σ jobs + remainder = node measured; the jobs' part matches
their records within 0.5 %, and the monthly report's ledger reconciles exactly after rounding."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from slurm_plugin import config as config_module
from slurm_plugin import node_record
from slurm_plugin.accounting import months
from slurm_plugin.cli.report import answer
from slurm_plugin.node.agent_client import request
from slurm_plugin.query.visibility import Scope
from slurm_plugin.storage import readonly
from testbed.hardware import SimulatedHardware
from testbed.host import ensure_user, poll
from testbed.slurm import Cluster
from tests.e2e.test_jobcarbon import BURN, SLEEP, _run_together, _stored

pytestmark = pytest.mark.slurm


def _rows(url: str, since_s: float) -> list[dict[str, Any]] | None:
    reader = readonly.Reader.open(url)
    try:
        rows = reader.rows("SELECT * FROM node_intervals WHERE t1_s > ? ORDER BY t0_s", [since_s])
    finally:
        reader.close()
    return rows or None


@pytest.fixture(scope="module")
def ledger_run(slurm_cluster: Cluster, simulated_hardware: SimulatedHardware, slurm_user: str):
    """Two jobs from an idle node; the agent's node record once it has left and delivered."""
    ensure_user("jcbob")
    socket = simulated_hardware.spool / "agent.sock"
    poll(lambda: True if not socket.exists() else None, 30, "an idle node (no agent from earlier tests)")
    started = time.time()
    ids = _run_together(slurm_cluster, [(slurm_user, BURN.format(s=6)), ("jcbob", SLEEP.format(s=6))])

    def agent_gone() -> bool | None:
        try:
            request(socket, {"op": "status"}, 1.0)
        except OSError:
            return True
        return None

    poll(agent_gone, 60, "the agent to leave after the last job")
    rows = poll(
        lambda: _rows(simulated_hardware.database_url, started), 30, "the node record in the database"
    )
    records = [poll(lambda i=i: _stored(slurm_cluster, i), 30, f"job {i} stored")[0] for i in ids]
    return rows, records


def test_per_interval_jobs_plus_remainder_is_the_node(ledger_run) -> None:
    rows, _ = ledger_run
    for row in rows:
        interval = {**row, "job_shares": json.loads(row["job_shares_json"])}
        for component in ("cpu", "dram", "gpu"):
            measured = row[f"{component}_j"]
            if measured is None:
                continue
            jobs = row[f"jobs_{component}_j"]
            assert jobs + node_record.remainder_j(interval, component) == pytest.approx(measured, rel=0.005)
            assert jobs <= measured * 1.005
    assert any(row["job_shares_json"] != "[]" for row in rows)


def test_the_jobs_part_of_the_ledger_is_their_records(ledger_run) -> None:
    rows, records = ledger_run
    keys = {(r["job_id"], r["restart_count"]) for r in records}
    for component in ("cpu", "gpu"):
        ledger_j = sum(row[f"jobs_{component}_j"] for row in rows)
        records_j = sum(r["energy"][component]["joules"] for r in records if r["energy"][component])
        assert ledger_j == pytest.approx(records_j, rel=0.005), component
    shared = {(s[0], s[1]) for row in rows for s in json.loads(row["job_shares_json"])}
    assert keys <= shared


def test_the_monthly_report_reconciles_the_ledger(ledger_run, slurm_cluster: Cluster) -> None:
    rows, _ = ledger_run
    settings = config_module.load(slurm_cluster.jobcarbon_config)
    month = months.containing(rows[0]["t0_s"], settings.accounting.timezone).name
    reader = readonly.Reader.open(settings.database.url)
    try:
        document = answer({"months": month, "by": "account", "top": 0}, reader, Scope(True, 0), settings)[
            "report"
        ]
    finally:
        reader.close()
    (total,) = [t for t in document["ledger"]["totals"] if t["cluster"] == "testbed"]
    assert round(total["jobs_kwh"] + total["remainder_kwh"], 6) == total["measured_kwh"]
    assert total["facility_kwh"] == pytest.approx(1.2 * total["measured_kwh"], abs=2e-6)
