"""Waste (idle GPUs + idle cores) in the monthly report: summed per user and account, split across
months by each job's IT energy, its CO2e the same share of the job's (docs/attribution.md, "Waste")."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from slurm_plugin.query import job_list
from slurm_plugin.query.visibility import Scope
from slurm_plugin.reports import formats, monthly
from slurm_plugin.storage import readonly
from tests import jobdb
from tests.jobdb import HOUR, Job, gpu
from tests.reports.test_monthly import BERLIN, JAN31, SETTINGS

IDLE, BUSY = gpu(0), gpu(1)
JOBS = [
    # two hours across Berlin's January/February boundary, its GPU never used
    Job(
        801,
        start=JAN31 + 22 * HOUR,
        rows=120,
        cpu_used=0.5,
        gpus=[IDLE],
        gpu_w={IDLE["uuid"]: (80.0, "measured")},
        gpu_util={IDLE["uuid"]: 0},
    ),
    Job(
        802,
        user="bob",
        uid=1001,
        account="chem",
        start=JAN31 + HOUR,
        cpu_used=0.9,
        gpus=[BUSY],
        gpu_w={BUSY["uuid"]: (300.0, "measured")},
        gpu_util={BUSY["uuid"]: 95},
    ),
]


@pytest.fixture(scope="module")
def reader(module_db_url: str) -> Iterator[readonly.Reader]:
    store = jobdb.open_store(module_db_url)
    store.upsert_intensity(jobdb.day_series())
    jobdb.store_jobs(store, JOBS, SETTINGS)
    store.close()
    opened = readonly.Reader.open(module_db_url)
    yield opened
    opened.close()


def test_waste_is_summed_per_user_and_split_across_months(reader: readonly.Reader) -> None:
    listed = job_list.job_list(reader, Scope(everything=True, uid=0), job_list.JobFilter(0, 2e9, mine=False))
    waste = {job["user"]: job for job in listed["jobs"]}
    reports = [
        monthly.build(reader, monthly.Request(m, "user", BERLIN, time.time())) for m in ("2026-01", "2026-02")
    ]
    rows = [row for report in reports for row in report["rows"]]
    for user in ("alice", "bob"):
        mine = [row for row in rows if row["group"] == user]
        assert sum(r["waste_kwh"] for r in mine) == pytest.approx(waste[user]["waste_j"] / 3.6e6, abs=2e-6)
        assert sum(r["waste_co2e_kg"] for r in mine) == pytest.approx(
            waste[user]["waste_co2e_g"] / 1000, abs=2e-6
        )
    alice = [row for row in rows if row["group"] == "alice"]
    assert all(r["waste_kwh"] > 0 for r in alice)  # both months carry part of the idle GPU
    assert "waste_kwh" in formats.to_csv(reports[0]).splitlines()[0].split(",")
