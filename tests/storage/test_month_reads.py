"""The monthly report's reads: months' figures per cluster and group, their zones, sources and clusters,
as rows, and only of the jobs the viewer may see."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from slurm_plugin.storage import month_reads, readonly
from slurm_plugin.storage.month_reads import EVERYTHING
from tests import jobdb
from tests.jobdb import DAY, HOUR, Job

JOBS = [
    Job(1, account="physics", start=DAY + HOUR, rows=30),
    Job(2, account="chem", user="bob", uid=1001, start=DAY + 2 * HOUR, rows=30),
    Job(3, account="idle", start=DAY - 40 * 24 * HOUR, rows=30),  # November 2025 only
]


@pytest.fixture
def reader(db_url: str) -> Iterator[readonly.Reader]:
    opened = readonly.Reader.open(jobdb.fill(db_url, JOBS))
    yield opened
    opened.close()


def test_a_months_sums_per_group_and_every_group_known(reader: readonly.Reader) -> None:
    found = month_reads.group_sums(reader, "account", ["2026-01"], EVERYTHING, {})
    assert set(found) == {("2026-01", "hpc", "physics"), ("2026-01", "hpc", "chem")}
    sums = {key[2]: row for key, row in found.items()}
    assert {key: row["jobs"] for key, row in sums.items()} == {"physics": 1, "chem": 1}
    stored = reader.rows(
        "SELECT j.account, f.it_energy_j, f.co2e_g FROM jobs j JOIN job_parts p ON p.job = j.id "
        "JOIN footprints f ON f.part_id = p.id AND f.is_current = 1"
    )
    for row in stored:
        if row["account"] in sums:
            assert sums[row["account"]]["it_energy_j"] == pytest.approx(row["it_energy_j"])
            assert sums[row["account"]]["co2e_g"] == pytest.approx(row["co2e_g"])
    assert {k for _, k in month_reads.group_keys(reader, "account", EVERYTHING)} == {
        "physics",
        "chem",
        "idle",
    }
    assert {k for _, k in month_reads.group_keys(reader, "user", EVERYTHING)} == {"alice", "bob"}
    assert month_reads.gpu_hours_by_model(reader, "account", ["2026-01"], EVERYTHING) == {}
    both = month_reads.group_sums(reader, "account", ["2025-11", "2026-01"], EVERYTHING, {})
    assert {key[:2] for key in both} == {("2025-11", "hpc"), ("2026-01", "hpc")}


def test_a_viewer_reads_only_the_jobs_it_may_see(reader: readonly.Reader) -> None:
    bob = readonly.visible_filter(False, 1001, ())
    assert set(month_reads.group_sums(reader, "account", ["2026-01"], bob, {})) == {
        ("2026-01", "hpc", "chem")
    }
    assert month_reads.group_keys(reader, "account", bob) == [("hpc", "chem")]
    coordinator = readonly.visible_filter(False, 4242, ("physics",))
    assert {k[2] for k in month_reads.group_sums(reader, "user", ["2026-01"], coordinator, {})} == {"alice"}
    tops = month_reads.top(reader, "account", ["2026-01"], bob, "users", 5)
    assert [(r["grp"], r["item"], r["place"]) for r in tops] == [("chem", "bob", 1)]


def test_a_months_zones_sources_clusters_and_recomputations(reader: readonly.Reader) -> None:
    used = month_reads.month_sources(reader, ["2026-01"])
    assert {zone for zone, _ in used} == {jobdb.SETTINGS.zone}
    assert all(json.loads(text) for _, text in used)
    assert month_reads.month_sources(reader, ["2026-03"]) == set()
    texts = [text for _, text in used]
    split = month_reads.group_sums(reader, "account", ["2026-01"], EVERYTHING, {"a_g": texts, "b_g": []})
    for row in split.values():
        assert (row["a_g"], row["b_g"]) == (pytest.approx(row["co2e_g"]), 0)
    factors = month_reads.source_factors(reader, [jobdb.SETTINGS.zone], DAY, DAY + 31 * 24 * HOUR)
    assert factors == {(p.source, p.scope) for p in jobdb.day_series()}
    assert month_reads.clusters_between(reader, DAY, DAY + 31 * 24 * HOUR, EVERYTHING) == {"hpc"}
    later = (DAY + 40 * 24 * HOUR, DAY + 41 * 24 * HOUR)
    assert month_reads.clusters_between(reader, *later, EVERYTHING) == set()
    assert month_reads.recomputed_after(reader, ["2026-01"], DAY + 31 * 24 * HOUR, EVERYTHING) == []


@pytest.mark.parametrize("by", ["account", "user"])
def test_group_keys_by_index_seeks_are_the_distinct_keys(reader: readonly.Reader, by: str) -> None:
    column = month_reads.GROUP_COLUMNS[by]
    plain = reader.rows(f"SELECT DISTINCT j.cluster, {column} AS grp FROM jobs j", {})  # noqa: S608
    expected = sorted(((r["cluster"], r["grp"]) for r in plain), key=str)
    assert sorted(month_reads.group_keys(reader, by, month_reads.EVERYTHING), key=str) == expected
