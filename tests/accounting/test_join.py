"""Footprints from a real store: stored parts joined with stored intensity, fallbacks, PUE, recompute.

Every expected number is worked out by hand in the test (docs/methodology.md has the formula).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from slurm_plugin import record
from slurm_plugin.accounting import join
from slurm_plugin.config import Accounting, PueRule
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.node.journal import Journal
from slurm_plugin.storage import Store, migrations, schema
from tests.storage.conftest import GPU, count

KWH = 3.6e6
MINUTE = 60.0
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
DE_YEARLY = 342.0  # Electricity Maps 2025, zone DE (slurm_plugin/data)
ZONE_SOURCE = "Electricity Maps yearly 2025 (ODbL)"
WORLD = 472.94

# (from, to) in minutes after `start`, then cpu, dram and gpu joules (None: not measured)
Interval = tuple[float, float, float | None, float | None, float | None]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url, busy_timeout_s=5.0)
    yield opened
    opened.close()


def job_record(
    intervals: list[Interval],
    job_id: int = 7,
    node: str = "node001",
    partition: str = "batch",
    start: dt.datetime = T0,
) -> dict[str, Any]:
    """A record built by the real record builder from a journal of `intervals`."""
    origin = start.timestamp()
    job = {
        "cluster": "hpc",
        "job_id": job_id,
        "restart_count": 0,
        "node": node,
        "user": "alice",
        "uid": 1000,
        "gid": 1000,
        "account": "physics",
        "partition": partition,
    }
    header = {"type": "header", "version": 1, "job": job, "start": origin, "gpus": [GPU], "node_info": {}}
    entries = [
        {
            "type": "interval",
            "t0": origin + a * MINUTE,
            "t1": origin + b * MINUTE,
            "cpu": None if cpu is None else [cpu, "apportioned"],
            "dram": None if dram is None else [dram, "apportioned"],
            "gpu": None if gpu is None else {GPU["uuid"]: [gpu, "measured"]},
            "cpuset": [0, 1],
        }
        for a, b, cpu, dram, gpu in intervals
    ]
    end = origin + max(b for _, b, *_ in intervals) * MINUTE
    return record.build(Journal(header, entries), end, [])


def add(store: Store, intervals: list[Interval], settings: Accounting, **job: Any) -> int:
    """Store a part with its footprint as ingest does; its part id."""
    document = job_record(intervals, **job)
    part_id = store.add_part(document, account=join.accountant(store, settings))
    assert part_id is not None
    return part_id


def point(
    zone: str, minutes: tuple[float, float], g_per_kwh: float, source: str = "electricitymaps", **flags: Any
) -> IntensityPoint:
    start, end = (T0 + dt.timedelta(minutes=m) for m in minutes)
    scope = "direct" if source in ("gb", "energidataservice") else "lifecycle"
    return IntensityPoint(zone, start, end, g_per_kwh, source, scope, **flags)


def kwh(energy: float) -> float:
    return energy * KWH


def test_a_job_crossing_intensity_slots_is_charged_at_each(store: Store) -> None:
    # 15-minute slots; the job runs 10:10-10:50 in two 20-minute intervals of 0.2 and 0.4 kWh.
    store.upsert_intensity(
        [
            point("DK-DK1", (0, 15), 100, "energidataservice"),
            point("DK-DK1", (15, 30), 200, "energidataservice"),
            point("DK-DK1", (30, 45), 300, "energidataservice"),
            point("DK-DK1", (45, 60), 400, "energidataservice", forecast=True),
            point("DK-DK1", (-60, -45), 10, "energidataservice"),  # before the job: unused
            point("DE", (0, 60), 999),  # another zone: unused
        ]
    )
    intervals: list[Interval] = [
        (10, 30, kwh(0.1), kwh(0.05), kwh(0.05)),
        (30, 50, kwh(0.3), kwh(0.1), None),
    ]
    part_id = add(store, intervals, Accounting(zone="DK-DK1", pue=1.5))
    found = store.footprint(part_id)
    assert found is not None
    # 0.05 kWh at 100, 0.15 at 200, 0.3 at 300, 0.1 at 400 (forecast); x 1.5 = 1.5 x 165 g
    assert found["co2e_g"] == pytest.approx(247.5)
    assert found["it_energy_j"] == pytest.approx(kwh(0.6))
    assert found["facility_energy_j"] == pytest.approx(kwh(0.9))
    assert found["effective_g_per_kwh"] == pytest.approx(275.0)
    assert found["measured_intensity_fraction"] == pytest.approx(0.5 / 0.6)
    assert found["rung"] == "forecast_series"
    assert found["energy_by_rung_j"] == pytest.approx(
        {"measured_series": kwh(0.5), "forecast_series": kwh(0.1)}
    )
    assert (found["sources"], found["scopes"], found["zone"]) == (["energidataservice"], ["direct"], "DK-DK1")
    assert (found["version"], found["current"]) == (1, True)


def test_gaps_in_energy_cost_nothing_and_gaps_in_intensity_fall_back_to_the_zone_year(store: Store) -> None:
    # 10:00-11:00 1 kWh, no samples 11:00-12:00, 12:00-13:00 2 kWh; a series only for 10:00-11:30.
    store.upsert_intensity([point("DE", (0, 60), 100), point("DE", (60, 90), 5000)])
    intervals: list[Interval] = [(0, 60, kwh(1), None, None), (120, 180, kwh(1.5), kwh(0.5), None)]
    part_id = add(store, intervals, Accounting(zone="DE"))
    found = store.footprint(part_id)
    assert found is not None
    assert found["co2e_g"] == pytest.approx(100 + 2 * DE_YEARLY)
    assert found["it_energy_j"] == pytest.approx(kwh(3))
    assert found["rung"] == "zone_yearly"
    assert found["energy_by_rung_j"] == pytest.approx({"measured_series": kwh(1), "zone_yearly": kwh(2)})
    assert found["measured_intensity_fraction"] == pytest.approx(1 / 3)
    assert found["sources"] == sorted(["electricitymaps", ZONE_SOURCE])


@pytest.mark.parametrize(
    ("settings", "g_per_kwh", "rung"),
    [
        (Accounting(zone="DE"), DE_YEARLY, "zone_yearly"),
        (Accounting(zone="XX-NOWHERE", country="FRA"), 44.18, "country_yearly"),
        (Accounting(zone="DE-NOWHERE"), 342.06, "country_yearly"),  # the zone's country: DEU
        (Accounting(zone="XX-NOWHERE", constant_g_per_kwh=250.0), 250.0, "constant"),
        (Accounting(constant_g_per_kwh=250.0), 250.0, "constant"),
        (Accounting(zone="XX-NOWHERE"), WORLD, "world"),
        (Accounting(), WORLD, "world"),
    ],
)
def test_without_a_series_each_job_takes_the_best_rung_of_the_ladder(
    store: Store, settings: Accounting, g_per_kwh: float, rung: str
) -> None:
    part_id = add(store, [(0, 30, kwh(0.25), None, None), (30, 60, kwh(0.75), None, None)], settings)
    found = store.footprint(part_id)
    assert found is not None
    assert found["co2e_g"] == pytest.approx(g_per_kwh)
    assert found["rung"] == rung
    assert found["energy_by_rung_j"] == pytest.approx({rung: kwh(1)})
    assert found["measured_intensity_fraction"] == 0
    assert found["scopes"] == ["lifecycle"]


def test_a_multi_node_job_is_one_job_of_three_parts_whose_footprints_add_up(store: Store) -> None:
    store.upsert_intensity([point("DE", (0, 60), 250)])
    settings = Accounting(zone="DE", pue=1.2)
    parts = [
        add(store, [(0, 30, kwh(0.1), None, None)], settings, node="node001"),
        add(store, [(0, 30, kwh(0.1), None, kwh(0.1))], settings, node="node002"),
        add(store, [(5, 35, kwh(0.2), kwh(0.1), None)], settings, node="node003"),
    ]
    assert (count(store, "jobs"), count(store, "job_parts")) == (1, 3)
    job = store.db.execute("SELECT job_id, start_s, end_s FROM jobs").fetchone()
    assert job == (7, T0.timestamp(), T0.timestamp() + 35 * MINUTE)
    assert {store.part(p)["node"] for p in parts} == {"node001", "node002", "node003"}
    footprints = [store.footprint(p) for p in parts]
    assert [f["co2e_g"] for f in footprints] == pytest.approx([30.0, 60.0, 90.0])  # kWh x 1.2 x 250
    assert sum(f["co2e_g"] for f in footprints) == pytest.approx(0.6 * 1.2 * 250)
    assert sum(f["facility_energy_j"] for f in footprints) == pytest.approx(kwh(0.72))


PUE_RULES = (
    PueRule(1.5, partition="gpu"),
    PueRule(1.1, start=dt.date(2026, 3, 3)),
    PueRule(1.4, partition="gpu", start=dt.date(2026, 3, 3)),
)


@pytest.mark.parametrize(("partition", "before", "after"), [("batch", 1.3, 1.1), ("gpu", 1.5, 1.4)])
def test_pue_per_partition_and_per_period_splits_a_job_at_the_boundary(
    store: Store, partition: str, before: float, after: float
) -> None:
    # 23:00-01:00 across the start of the 2026-03-03 rules, 1 kWh per hour
    settings = Accounting(zone="DE", pue=1.3, pue_rules=PUE_RULES)
    late = dt.datetime(2026, 3, 2, 23, 0, tzinfo=dt.UTC)
    intervals: list[Interval] = [(0, 40, kwh(2 / 3), None, None), (40, 120, kwh(4 / 3), None, None)]
    part_id = add(store, intervals, settings, partition=partition, start=late)
    found = store.footprint(part_id)
    assert found is not None
    assert found["it_energy_j"] == pytest.approx(kwh(2))
    assert found["facility_energy_j"] == pytest.approx(kwh(before + after))
    assert found["co2e_g"] == pytest.approx((before + after) * DE_YEARLY)


def test_recompute_versions_footprints_whose_forecasts_were_replaced_by_actuals(store: Store) -> None:
    settings = Accounting(zone="GB", pue=1.0)
    store.upsert_intensity(
        [point("GB", (0, 30), 200, "gb", forecast=True), point("GB", (30, 60), 220, "gb", forecast=True)]
    )
    forecast_part = add(store, [(0, 30, kwh(0.5), None, None), (30, 60, kwh(0.5), None, None)], settings)
    steady_part = add(
        store, [(0, 60, kwh(1), None, None)], settings, job_id=8, start=T0 - dt.timedelta(hours=3)
    )
    before = store.footprint(forecast_part)
    assert before is not None
    assert (before["rung"], before["co2e_g"]) == ("forecast_series", pytest.approx(210.0))

    store.upsert_intensity([point("GB", (0, 30), 150, "gb"), point("GB", (30, 60), 250, "gb")])
    result = join.recompute(store, settings, None)
    assert (result.checked, result.changed) == (2, 1)

    current = store.footprint(forecast_part)
    assert current is not None
    assert (current["version"], current["rung"], current["co2e_g"]) == (
        2,
        "measured_series",
        pytest.approx(200.0),
    )
    assert current["measured_intensity_fraction"] == pytest.approx(1.0)
    old, new = store.footprint_history(forecast_part)
    assert (old["version"], old["current"], new["current"]) == (1, False, True)
    assert (old["rung"], old["co2e_g"], old["sources"]) == ("forecast_series", pytest.approx(210.0), ["gb"])
    assert old["energy_by_rung_j"] == pytest.approx({"forecast_series": kwh(1)})
    assert old["footprint_id"] == before["footprint_id"]
    # Reports read footprint months alone: the retired version's months are no longer current.
    currency = (
        "SELECT footprint_id, is_current, co2e_g, account, job_id FROM footprint_months"
        " WHERE footprint_id IN (?, ?)"
    )
    found = {
        row[0]: row[1:] for row in store.db.execute(currency, [old["footprint_id"], new["footprint_id"]])
    }
    assert found[old["footprint_id"]] == (0, pytest.approx(210.0), "physics", 7)
    assert found[new["footprint_id"]] == (1, pytest.approx(200.0), "physics", 7)

    steady = store.footprint_history(steady_part)
    assert [(f["version"], f["rung"]) for f in steady] == [(1, "zone_yearly")]
    again = join.recompute(store, settings, None)
    assert (again.checked, again.changed) == (2, 0)
    assert len(store.footprint_history(forecast_part)) == 2


def test_recompute_gives_a_part_without_a_footprint_its_first(store: Store) -> None:
    part_id = store.add_part(job_record([(0, 60, kwh(1), None, None)]))
    assert part_id is not None
    assert store.footprint(part_id) is None
    result = join.recompute(store, Accounting(zone="DE"), None)
    assert (result.checked, result.changed) == (1, 1)
    found = store.footprint(part_id)
    assert found is not None
    assert (found["version"], found["co2e_g"]) == (1, pytest.approx(DE_YEARLY))


def test_recompute_since_skips_parts_that_ended_earlier(store: Store) -> None:
    settings = Accounting(zone="DE")
    early = add(store, [(0, 60, kwh(1), None, None)], settings, job_id=1)
    late = add(store, [(0, 60, kwh(1), None, None)], settings, job_id=2, start=T0 + dt.timedelta(days=1))
    store.upsert_intensity([point("DE", (0, 60), 100), point("DE", (1440, 1500), 100)])
    result = join.recompute(store, settings, T0 + dt.timedelta(hours=2))
    assert (result.checked, result.changed) == (1, 1)
    assert store.footprint(early)["rung"] == "zone_yearly"
    assert store.footprint(late)["co2e_g"] == pytest.approx(100.0)


NEW_YEAR_EVE = dt.datetime(2025, 12, 31, 22, 30, tzinfo=dt.UTC)  # 23:30 in Berlin


def test_the_footprint_computed_at_ingest_is_what_a_recompute_finds(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ingest accounts the record before storing it; a recompute reads the stored part back. Same inputs,
    # same numbers: nothing changes, not even the monthly figures (a job across New Year in Berlin).
    store.upsert_intensity([point("DE", (m, m + 15), 200 + m) for m in range(0, 120, 15)])
    settings = Accounting(zone="DE", pue=1.3, timezone="Europe/Berlin")
    add(store, [(0, 20, kwh(0.2), kwh(0.01), None), (20, 40, None, None, kwh(0.3))], settings)
    add(store, [(0, 90, kwh(0.5), kwh(0.02), kwh(0.1))], settings, job_id=2, start=NEW_YEAR_EVE)
    refilled: list[object] = []
    monkeypatch.setattr(store, "replace_footprint_months", lambda *args: refilled.append(args))
    result = join.recompute(store, settings, None)
    assert (result.checked, result.changed, refilled) == (2, 0, [])


def test_an_intensity_window_answers_as_the_store_with_one_query_while_requests_fall_inside(
    store: Store,
) -> None:
    store.upsert_intensity([point("DE", (m, m + 60), 100 + m) for m in range(-3000, 6000, 60)])
    store.upsert_intensity([point("GB", (0, 30), 150, "gb")])
    queries: list[tuple[str, dt.datetime, dt.datetime]] = []

    class Counted:
        def intensity(self, zone: str, start: dt.datetime, end: dt.datetime) -> list[IntensityPoint]:
            queries.append((zone, start, end))
            return store.intensity(zone, start, end)

    window = join.IntensityWindow(Counted())
    requests = [("DE", 0, 90), ("DE", 30, 31), ("DE", -1000, 1400), ("DE", 1500, 1600), ("GB", 0, 60)]
    for zone, start, end in requests:
        span = (T0 + dt.timedelta(minutes=start), T0 + dt.timedelta(minutes=end))
        assert window.intensity(zone, *span) == store.intensity(zone, *span)
    # the first three fall inside a day either side of the first; the fourth ends beyond; a new zone
    assert [(zone, start - T0) for zone, start, _ in queries] == [
        ("DE", -join.WINDOW_MARGIN),
        ("DE", dt.timedelta(minutes=1500) - join.WINDOW_MARGIN),
        ("GB", -join.WINDOW_MARGIN),
    ]


def test_a_months_joules_per_method_and_bounds_and_the_migration_that_fills_old_months(store: Store) -> None:
    # 1 kWh of CPU and 0.25 kWh of DRAM apportioned (0.7-1.3), 0.75 kWh of GPU measured (0.9-1.1); no
    # series: DE's yearly average (0.6-1.4), PUE 1.
    part_id = add(store, [(0, 60, kwh(1), kwh(0.25), kwh(0.75))], Accounting(zone="DE"))
    found = store.footprint(part_id)
    assert found is not None
    (month,) = store.footprint_months(found["footprint_id"])
    assert (month["measured_j"], month["apportioned_j"]) == pytest.approx((kwh(0.75), kwh(1.25)))
    assert (month["integrated_j"], month["estimated_j"]) == (0.0, 0.0)
    low, high = (1.25 * 0.7 + 0.75 * 0.9) / 2, (1.25 * 1.3 + 0.75 * 1.1) / 2  # 0.775, 1.225
    assert (month["it_energy_low_j"], month["it_energy_high_j"]) == pytest.approx(
        (kwh(2 * low), kwh(2 * high))
    )
    assert month["co2e_low_g"] == pytest.approx(2 * DE_YEARLY * low * 0.6)
    assert month["co2e_high_g"] == pytest.approx(2 * DE_YEARLY * high * 1.4)
    # A month stored before version 14 gets the same figures from the migration's conservative fill, as
    # each component here has one method throughout and all its CO2e one rung.
    store.db.execute(
        "UPDATE footprint_months SET " + ", ".join(f"{name} = NULL" for name in schema.FOOTPRINT_MONTH_BANDS)  # noqa: S608 - constants
    )
    migrations._fill_month_bands(store.db)
    (filled,) = store.footprint_months(found["footprint_id"])
    bands = schema.FOOTPRINT_MONTH_BANDS
    assert {n: filled[n] for n in bands} == pytest.approx({n: month[n] for n in bands})
    # ... and its job's keys, from its footprint, part and job rows.
    keys = ", ".join(name for name, _, _ in schema.FOOTPRINT_MONTH_KEYS)
    stored = store.db.execute(f"SELECT {keys} FROM footprint_months").fetchall()  # noqa: S608 - constants
    store.db.execute("UPDATE footprint_months SET account = NULL, is_current = NULL, job = NULL")
    (fill,) = [
        s
        for s in next(m for m in migrations.MIGRATIONS if m.version == 14).statements
        if isinstance(s, str) and s.startswith("UPDATE")
    ]
    store.db.execute(fill)
    assert store.db.execute(f"SELECT {keys} FROM footprint_months").fetchall() == stored  # noqa: S608
    assert stored[0][:1] == (1,)
