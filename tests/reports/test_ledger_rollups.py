"""Ledger rollups (storage/ledger_rollups.py): the report's ledger section reads a month's rollup while it
is current and the intervals otherwise, with the same section either way, for every grouping and both
weights; a late interval or job record, another time zone or other PUE rules make a month's rollup
unusable until `jobcarbon rollup` builds it again. Two months: a job and the node's intervals cross the
boundary, a dated PUE rule changes within January, one share's job has no record."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from slurm_plugin import node_record
from slurm_plugin.accounting import months
from slurm_plugin.config import PueRule
from slurm_plugin.reports import ledger, monthly
from slurm_plugin.storage import Store, ledger_reads, ledger_rollups, node_intervals, readonly
from tests.storage.conftest import make_record

HOUR = 3600.0
FEB = 1769904000.0  # 2026-02-01T00:00:00Z
JAN15 = FEB - 17 * 86400.0
RULES = (PueRule(1.5, start=dt.date(2026, 1, 31)),)  # a change within January
PERIOD = "2026-01..2026-02"


def interval(t0: float, shares: list[list[float]], cpu_j: float = 90000.0) -> dict:
    jobs_j = sum(share[2] for share in shares)
    return {
        "t0_s": t0, "t1_s": t0 + HOUR, "cpu_j": cpu_j, "cpu_method": "measured", "dram_j": 9000.0,
        "dram_method": "measured", "gpu_j": None, "gpu_method": None, "jobs_cpu_j": jobs_j * 0.9,
        "jobs_dram_j": jobs_j * 0.1, "jobs_gpu_j": 0.0, "jobs_core_s": sum(s[3] for s in shares),
        "unmeasured_s": 0.0, "job_shares": shares, "notes": [],
    }  # fmt: skip


def add_intervals(store: Store, node: str, intervals: list[dict]) -> None:
    node_intervals.add(store, node_record.build("hpc", node, None, 32, intervals))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """Jobs 4711 (physics) and 4712 (chem) on node001 from Jan 31 22:00 to Feb 1 04:00, job 4799 (no
    record) beside them after midnight; node002 idle for an hour on Jan 15 and two of February."""
    opened = Store.open(db_url, 5.0)
    opened.add_part(make_record(job_id=4711, start=FEB - 2 * HOUR, rows=36, step_s=600.0))
    chem = make_record(job_id=4712, account="chem", user="bob", start=FEB - 2 * HOUR, rows=36, step_s=600.0)
    opened.add_part(chem)
    two = [[4711, 0, 40000.0, 7200.0], [4712, 0, 20000.0, 21600.0]]
    three = [*two, [4799, 0, 10000.0, 3600.0]]
    hours = [FEB - 3 * HOUR + i * HOUR for i in range(8)]
    shares = [[], two, two, three, three, three, three, three]
    add_intervals(opened, "node001", [interval(t, jobs) for t, jobs in zip(hours, shares, strict=True)])
    add_intervals(opened, "node002", [interval(JAN15, []), *(interval(FEB + i * HOUR, []) for i in range(2))])
    yield opened
    opened.close()


def sections(reader: readonly.Reader, timezone: str = "UTC", rules: tuple = RULES) -> dict:
    """The ledger section of every grouping's report of both months, under both weights."""
    found = {}
    for by in monthly.BY:
        document = monthly.build(reader, monthly.Request(PERIOD, by, timezone, time.time()))
        for share_by in ("energy", "core_hours"):
            wanted = ledger.Settings(timezone, share_by, pue=1.2, pue_rules=rules)
            found[by, share_by] = ledger.section(reader, document, wanted)
    return found


def built(store: Store, timezone: str = "UTC", rules: tuple = RULES) -> list[str]:
    return ledger.roll_up(store, ledger.Settings(timezone, pue=1.2, pue_rules=rules))


def test_sections_from_ledger_rollups_equal_sections_from_the_intervals(
    store: Store, reader: readonly.Reader
) -> None:
    live = sections(reader)
    assert built(store) == ["2026-01", "2026-02"]
    assert built(store) == []  # nothing changed since
    january = ledger.pieces(months.parse("2026-01", "UTC"), ledger.Settings("UTC", pue_rules=RULES))
    assert len(january) == 3  # the rule's change cuts January in two
    assert ledger_rollups.fresh(reader.rows, "2026-01", january[0], january[-1], january)
    assert sections(reader) == live
    shares = {(s["month"], s["group"]): s["remainder_kwh"] for s in live["account", "energy"]["shares"]}
    assert shares["2026-02", ledger.NO_RECORD] > 0  # job 4799's share
    assert shares["2026-01", "physics"] > 0
    assert shares["2026-02", "chem"] > 0
    jan, feb = live["account", "energy"]["totals"]
    assert (jan["nodes"], feb["nodes"]) == (1, 2)  # the most nodes any PUE piece of the month saw
    assert 1.2 < jan["pue"] < 1.5  # Jan 15 at 1.2, Jan 31 at 1.5
    assert feb["pue"] == 1.5


def test_jobs_looked_up_one_at_a_time_give_the_same_sections(
    reader: readonly.Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proportional pass looks a day's jobs up by id, LOOKUP at a time: batches change nothing."""
    live = sections(reader)
    monkeypatch.setattr(ledger_reads, "LOOKUP", 1)
    assert sections(reader) == live


def test_a_late_interval_or_job_record_makes_only_its_months_rollups_stale(
    store: Store, reader: readonly.Reader
) -> None:
    built(store)
    add_intervals(store, "node002", [interval(FEB + 5 * HOUR, [])])
    after_interval = sections(reader)  # February read from the intervals: the new one counts
    assert after_interval["account", "energy"]["totals"][1]["node_hours"] == 8  # 7 before
    assert built(store) == ["2026-02"]
    assert sections(reader) == after_interval
    store.add_part(make_record(job_id=4799, account="bio", start=FEB + 1800, rows=6, step_s=600.0))
    after_record = sections(reader)
    feb_groups = {s["group"] for s in after_record["account", "energy"]["shares"] if s["month"] == "2026-02"}
    assert "bio" in feb_groups
    assert ledger.NO_RECORD not in feb_groups
    # January's jobs are read an hour past its end: its last interval may start before its job's record
    assert built(store) == ["2026-01", "2026-02"]
    store.add_part(make_record(job_id=4713, account="chem", start=FEB + 10 * HOUR, rows=2, step_s=600.0))
    after_late = sections(reader)
    assert built(store) == ["2026-02"]
    assert sections(reader) == after_late


def test_another_time_zone_or_pue_rule_reads_the_intervals_until_rebuilt(
    store: Store, reader: readonly.Reader
) -> None:
    built(store)
    berlin = sections(reader, "Europe/Berlin")
    other_rules = (PueRule(1.3, start=dt.date(2026, 2, 2)),)
    other = sections(reader, rules=other_rules)
    assert built(store, "Europe/Berlin") == ["2026-01", "2026-02"]
    assert sections(reader, "Europe/Berlin") == berlin
    assert built(store, rules=other_rules) == ["2026-01", "2026-02"]
    assert sections(reader, rules=other_rules) == other
