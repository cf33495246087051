"""Monthly rollups (storage/rollups.py): a report reads a month's rollup while it is current and the
footprint months otherwise, with the same document either way, for every viewer; any change to a
month's footprint months (a new job, a recompute) makes its rollup stale until it is rebuilt."""

from __future__ import annotations

import time

from slurm_plugin.reports import monthly
from slurm_plugin.storage import Store, month_reads, readonly, rollups
from tests import jobdb
from tests.jobdb import HOUR, Job
from tests.reports.test_monthly import BERLIN, JAN31, MONTHS, SETTINGS

PERIOD = f"{MONTHS[0]}..{MONTHS[-1]}"
VIEWERS = {
    "admin": month_reads.EVERYTHING,
    "bob": readonly.visible_filter(False, 1001, ()),
    "bio coordinator": readonly.visible_filter(False, 4000, ("bio",)),
}


def reports(reader: readonly.Reader) -> dict[tuple[str, str], dict]:
    """Every grouping's report of the whole period, per viewer, with the largest jobs and users."""
    now = time.time()
    return {
        (by, viewer): monthly.build(reader, monthly.Request(PERIOD, by, BERLIN, now, visible=visible, top=3))
        for by in monthly.BY
        for viewer, visible in VIEWERS.items()
    }


def roll_up(store: Store) -> list[str]:
    changed = rollups.changed_months(store.db)
    for month in changed:
        with store.transaction():
            rollups.build(store.db, month)
    return changed


def test_reports_from_rollups_equal_reports_from_footprint_months(
    store: Store, reader: readonly.Reader
) -> None:
    live = reports(reader)
    assert month_reads.rolled_up(reader, MONTHS) == set()
    assert roll_up(store) == ["2025-11", "2026-01", "2026-02", "2026-03", "2026-04"]
    assert month_reads.rolled_up(reader, MONTHS) == {"2025-11", "2026-01", "2026-02", "2026-03", "2026-04"}
    assert rollups.changed_months(store.db) == []
    assert reports(reader) == live
    assert live["account", "admin"]["gpu_models"]  # the GPU jobs' models came from the rollups too


def test_a_change_makes_its_months_rollup_stale_until_rebuilt(store: Store, reader: readonly.Reader) -> None:
    roll_up(store)
    jobdb.store_jobs(store, [Job(8, account="late", start=JAN31 - 2 * HOUR, rows=30)], SETTINGS)
    assert rollups.changed_months(store.db) == ["2026-01"]
    assert "2026-01" not in month_reads.rolled_up(reader, MONTHS)
    live = reports(reader)
    assert any(row["group"] == "late" for row in live["account", "admin"]["rows"])
    assert roll_up(store) == ["2026-01"]
    assert month_reads.rolled_up(reader, ["2026-01"]) == {"2026-01"}
    assert reports(reader) == live


def test_retired_and_deleted_footprint_months_mark_their_months(store: Store) -> None:
    first, second = (store.footprint(part)["footprint_id"] for part in store.parts()[:2])
    roll_up(store)
    with store.transaction():  # what a recompute's RETIRE_FOOTPRINT_MONTHS does
        store.db.execute("UPDATE footprint_months SET is_current = 0 WHERE footprint_id = ?", (first,))
    assert rollups.changed_months(store.db) == [m["month"] for m in store.footprint_months(first)]
    roll_up(store)
    months = [m["month"] for m in store.footprint_months(second)]
    store.replace_footprint_months(second, [])
    assert rollups.changed_months(store.db) == months


def test_the_largest_jobs_and_users_come_from_the_rollups_up_to_what_they_keep(
    store: Store, reader: readonly.Reader
) -> None:
    from slurm_plugin.cli import report

    roll_up(store)
    sql: list[str] = []
    read = reader.rows
    reader.rows = lambda text, params=(): sql.append(text) or read(text, params)  # type: ignore[method-assign]
    ranked = month_reads.top(reader, "account", MONTHS, month_reads.EVERYTHING, "jobs", 3, set(MONTHS))
    assert ranked
    assert all("month_rollup_top" in text for text in sql)
    sql.clear()
    month_reads.top(reader, "account", MONTHS, VIEWERS["bob"], "jobs", 3, set(MONTHS))
    assert not any("month_rollup_top" in text for text in sql)  # a viewer's top is not the group's
    assert report.MAX_TOP == rollups.TOP_KEPT  # --top never asks for more than the rollups keep
