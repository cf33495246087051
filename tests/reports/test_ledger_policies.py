"""The allocation policies by the worked example of docs/methodology.md ("Allocation policies"): one
interval of 66 kJ shared by two jobs (32 kJ on 8 cores, 11 kJ on 24), then an idle interval of 40 kJ."""

from __future__ import annotations

import time

import pytest

from slurm_plugin import node_record
from slurm_plugin.reports import ledger, monthly
from slurm_plugin.storage import Store, node_intervals, readonly
from tests.storage.conftest import START, make_record

KWH = 3.6e6


def interval(t0: float, cpu_j: float, dram_j: float, shares: list[list[float]]) -> dict:
    jobs_cpu = {4711: 30000.0, 4712: 10000.0}
    jobs_dram = {4711: 2000.0, 4712: 1000.0}
    ids = [int(s[0]) for s in shares]
    return {
        "t0_s": t0, "t1_s": t0 + 300.0, "cpu_j": cpu_j, "cpu_method": "measured", "dram_j": dram_j,
        "dram_method": "measured", "gpu_j": None, "gpu_method": None,
        "jobs_cpu_j": sum(jobs_cpu[i] for i in ids), "jobs_dram_j": sum(jobs_dram[i] for i in ids),
        "jobs_gpu_j": 0.0, "jobs_core_s": sum(s[3] for s in shares), "unmeasured_s": 0.0,
        "job_shares": shares, "notes": [],
    }  # fmt: skip


@pytest.fixture
def reader(db_url: str):
    store = Store.open(db_url, 5.0)
    for job_id, account in ((4711, "physics"), (4712, "chem")):
        store.add_part(make_record(job_id=job_id, account=account, start=START + 10))
    shared = [[4711, 0, 32000.0, 2400.0], [4712, 0, 11000.0, 7200.0]]
    node_intervals.add(
        store,
        node_record.build(
            "hpc",
            "node001",
            None,
            32,
            [interval(START, 60000.0, 6000.0, shared), interval(START + 300, 36000.0, 4000.0, [])],
        ),
    )
    store.close()
    opened = readonly.Reader.open(db_url)
    yield opened
    opened.close()


@pytest.mark.parametrize(
    ("share_by", "physics_kj", "chem_kj"),
    [("energy", 23 * 32 / 43, 23 * 11 / 43), ("core_hours", 5.75, 17.25)],
)
def test_the_worked_example(
    reader: readonly.Reader, share_by: str, physics_kj: float, chem_kj: float
) -> None:
    document = monthly.build(reader, monthly.Request("2026-01", "account", "UTC", time.time()))
    section = ledger.section(reader, document, ledger.Settings("UTC", share_by, pue=1.2))
    (total,) = section["totals"]
    assert total["measured_kwh"] == round(106000 / KWH, 6)  # 66 kJ + 40 kJ
    assert total["jobs_kwh"] == round(43000 / KWH, 6)
    assert total["remainder_kwh"] == round(63000 / KWH, 6)  # 23 kJ shared + 40 kJ of the idle node
    assert total["facility_kwh"] == round(1.2 * 106000 / KWH, 6)
    shares = {s["group"]: s["remainder_kwh"] for s in section["shares"]}
    assert shares["physics"] == pytest.approx(physics_kj * 1000 / KWH, abs=1e-6)
    assert shares["chem"] == pytest.approx(chem_kj * 1000 / KWH, abs=1e-6)
    assert shares[ledger.IDLE] == pytest.approx(40000 / KWH, abs=1e-6)
    assert round(sum(shares.values()), 6) == total["remainder_kwh"]
