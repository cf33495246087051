"""bench.year_ledger on a thousand jobs: its ledger holds the jobs' energy and core-seconds, shared as the
agent shares them, plus the idle draw; a rerun adds nothing."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

from bench import monthly_report, year_ledger
from slurm_plugin.reports import ledger
from slurm_plugin.storage import readonly

DAY_S = 86400.0


def test_a_month_of_daily_intervals_holds_the_jobs_and_the_idle_draw(tmp_path: Path) -> None:
    path = tmp_path / "bench.db"
    monthly_report.build(path, 1000, 20)
    assert year_ledger.add(path, 1, nodes=2000, interval_s=DAY_S) == 2000 * 31
    assert year_ledger.add(path, 1, nodes=2000, interval_s=DAY_S) == 0
    with sqlite3.connect(path) as conn:
        energy_j, core_s, gpu_nodes = conn.execute(
            "SELECT SUM(cpu_j + dram_j + COALESCE(gpu_j, 0)), SUM(elapsed_s * cpu_count), "
            "COUNT(DISTINCT CASE WHEN gpu_j IS NOT NULL THEN node END) FROM job_parts"
        ).fetchone()
        keys = set(conn.execute("SELECT job_id, restart_count FROM jobs"))
        intervals = conn.execute(
            "SELECT jobs_cpu_j + jobs_dram_j + jobs_gpu_j, jobs_core_s, job_shares_json, gpu_j "
            "FROM node_intervals"
        ).fetchall()
    assert math.isclose(sum(row[0] for row in intervals), energy_j)
    assert math.isclose(sum(row[1] for row in intervals), core_s)
    assert sum(row[3] is not None for row in intervals) == gpu_nodes * 31
    for jobs_j, jobs_core_s, shares_json, _ in intervals:
        shares = json.loads(shares_json)
        assert {(job, restart) for job, restart, _, _ in shares} <= keys
        assert math.isclose(sum(share[2] for share in shares), jobs_j, abs_tol=1e-3)
        assert math.isclose(sum(share[3] for share in shares), jobs_core_s, abs_tol=1e-3)
    reader = readonly.Reader.open(f"sqlite:///{path}")
    document = {"metadata": {"months": ["2026-01"], "by": "account"}, "totals": [], "rows": []}
    (total,) = ledger.section(reader, document, ledger.Settings("UTC"))["totals"]
    reader.close()
    idle_j = 31 * DAY_S * (2000 * sum(year_ledger.IDLE_W[:2]) + gpu_nodes * year_ledger.IDLE_W[2])
    assert (total["nodes"], total["node_hours"]) == (2000, 2000 * 31 * 24)
    assert math.isclose(total["jobs_kwh"], energy_j / 3.6e6, abs_tol=1e-5)
    assert math.isclose(total["remainder_kwh"], idle_j / 3.6e6, abs_tol=1e-5)
