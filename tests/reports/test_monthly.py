"""Monthly reports: months cut in the site's time zone (DST included), conservation, periods, every
format, and exports that load: CSVs of several months concatenated sum to the reports' totals."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import time
from pathlib import Path

import jsonschema
import pytest

from slurm_plugin.accounting import join, months
from slurm_plugin.config import Accounting, Embodied, MarketFactor
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.reports import formats, monthly
from slurm_plugin.storage import Store, readonly
from tests import jobdb
from tests.jobdb import HOUR, Job, gpu

SCHEMA = json.loads((Path(monthly.__file__).parent / "monthly_report_schema.json").read_text())
CSV_SCHEMA = json.loads((Path(monthly.__file__).parent / "monthly_report_csv_schema.json").read_text())
BERLIN = "Europe/Berlin"
SETTINGS = Accounting(zone="DE", pue=1.2, timezone=BERLIN)
JAN31 = 1769817600.0  # 2026-01-31T00:00Z; Berlin's February starts at 23:00Z (UTC+1)
MAR31 = 1774915200.0  # 2026-03-31T00:00Z; after the DST change (29 March) April starts at 22:00Z (UTC+2)
MONTHS = ("2025-11", "2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05")
A100 = gpu(0)
MIG = gpu(10, "NVIDIA A100-SXM4-80GB MIG 3g.40gb", parent=gpu(9)["uuid"], share=3 / 7)


def jobs() -> list[Job]:
    return [
        Job(1, start=JAN31 + 22 * HOUR, rows=120),  # 1 h in January, 1 h in February (Berlin)
        Job(2, start=MAR31 + 21 * HOUR, rows=120, account="chem", user="bob", uid=1001),  # DST edge
        *(Job(3, node=n, start=jobdb.DAY + 5 * HOUR, rows=90) for n in ("node001", "node002")),  # multi-node
        Job(4250, start=jobdb.DAY + 2 * HOUR, account="bio", uid=1002, user="carol"),  # array task 4242_1
        Job(4251, start=jobdb.DAY + 3 * HOUR, account="bio", uid=1002, user="carol"),  # array task 4242_2
        Job(5, partition="gpu", gpus=[A100], gpu_w={A100["uuid"]: (300.0, "measured")}, start=JAN31),
        Job(6, partition="gpu", gpus=[MIG], gpu_w={MIG["uuid"]: (100.0, "estimated")}, start=JAN31 + HOUR),
        Job(7, account="idle", start=jobdb.DAY - 40 * 86400.0, rows=30),  # November only
    ]


def fill(url: str) -> Store:
    """The store at `url` holding `jobs()` and DE's intensity series for 1 January."""
    opened = jobdb.open_store(url)
    opened.upsert_intensity(jobdb.day_series())
    jobdb.store_jobs(opened, jobs(), SETTINGS)
    return opened


def build(reader: readonly.Reader, month: str, by: str = "account", **extra) -> dict:
    return monthly.build(reader, monthly.Request(month, by, BERLIN, time.time(), **extra))


def total(document: dict) -> dict:
    """The one total of a report of one month on one cluster."""
    (only,) = document["totals"]
    return only


def test_month_boundaries_follow_the_time_zone_and_dst() -> None:
    assert months.parse("2026-02", BERLIN).start_s == JAN31 + 23 * HOUR
    assert months.parse("2026-04", BERLIN).start_s == MAR31 + 22 * HOUR
    assert (
        months.parse("2026-03", BERLIN).end_s - months.parse("2026-03", BERLIN).start_s
        == (31 * 24 - 1) * HOUR
    )
    with pytest.raises(ValueError, match="not a month"):
        months.parse("2026-13", BERLIN)


def test_a_part_crossing_a_month_is_split_by_time_and_sums_to_its_footprint(store: Store) -> None:
    for part_id in store.parts():
        whole = store.footprint(part_id)
        split = store.footprint_months(whole["footprint_id"])
        for name in ("it_energy_j", "facility_energy_j", "co2e_g"):
            assert sum(m[name] for m in split) == pytest.approx(whole[name], rel=1e-9, abs=1e-9)
        timeline = store.timeline(part_id)
        for k, name in enumerate(("cpu_j", "dram_j", "gpu_j"), start=2):
            expected = sum(row[k] or 0.0 for row in timeline)
            assert sum(m[name] for m in split) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    first = store.footprint_months(store.footprint(store.parts()[0])["footprint_id"])
    assert [m["month"] for m in first] == ["2026-01", "2026-02"]
    assert first[0]["it_energy_j"] == pytest.approx(first[1]["it_energy_j"])  # a symmetric load curve
    assert [m["core_hours"] for m in first] == pytest.approx([4.0, 4.0])  # 4 CPUs x 1 h each side


def test_the_sum_of_all_monthly_reports_is_the_sum_of_all_jobs(store: Store, reader: readonly.Reader) -> None:
    footprints = [store.footprint(p) for p in store.parts()]
    for by in monthly.BY:
        totals = [total(build(reader, m, by)) for m in MONTHS]
        assert sum(t["co2e_kg"] for t in totals) == pytest.approx(
            sum(f["co2e_g"] for f in footprints) / 1000, abs=1e-5
        )
        assert sum(t["facility_kwh"] for t in totals) == pytest.approx(
            sum(f["facility_energy_j"] for f in footprints) / 3.6e6, abs=1e-5
        )


def test_rows_add_up_to_the_totals_and_groups_without_jobs_show_zeros(reader: readonly.Reader) -> None:
    document = build(reader, "2026-02")
    rows = {r["group"]: r for r in document["rows"]}
    assert set(rows) == {"physics", "chem", "bio", "idle"}  # idle ran in November
    assert rows["idle"]["jobs"] == 0
    assert rows["idle"]["co2e_kg"] == 0.0
    assert rows["idle"]["effective_g_per_kwh"] is None
    for name in ("jobs", "cpu_core_hours", "it_kwh", "facility_kwh", "co2e_kg", "gpu_hours"):
        assert sum(r[name] for r in document["rows"]) == pytest.approx(total(document)[name], abs=1e-5)
    assert sum(r["co2e_share"] for r in document["rows"]) == pytest.approx(1.0, abs=1e-5)


def test_multi_node_and_array_jobs_count_as_jobs_not_parts(reader: readonly.Reader) -> None:
    january = {r["group"]: r for r in build(reader, "2026-01")["rows"]}
    assert january["bio"]["jobs"] == 2  # two array tasks
    assert january["physics"]["jobs"] == 4  # 1 (January half), 3 (two nodes), 5, 6
    assert january["physics"]["cpu_core_hours"] == pytest.approx(4 * (1 + 1.5 * 2 + 1 + 1))


def test_gpu_hours_by_model_and_data_quality(reader: readonly.Reader) -> None:
    document = build(reader, "2026-01", "partition")
    gpus = {r["group"]: r for r in document["rows"]}["gpu"]
    models = {(e["group"], e["gpu_model"]): e["gpu_hours"] for e in document["gpu_models"]}
    assert models == pytest.approx({("gpu", A100["model"]): 1.0, ("gpu", MIG["model"]): 3 / 7})
    assert {e["month"] for e in document["gpu_models"]} == {"2026-01"}
    assert 0 < gpus["measured_energy_share"] < 1  # the MIG slice's energy is estimated
    assert gpus["series_intensity_co2e_share"] == 0.0  # 31 January has no stored series: yearly average
    january = total(build(reader, "2026-01"))
    assert 0 < january["series_intensity_co2e_share"] < 1  # 1 January is covered by the series


def test_embodied_emissions_are_a_separate_scope_3_column(reader: readonly.Reader) -> None:
    plain = build(reader, "2026-01", "partition")
    factors = Embodied(gpu_kg_co2e=1500.0, gpu_lifetime_years=5.0)
    with_embodied = build(reader, "2026-01", "partition", embodied=factors)
    assert total(with_embodied)["co2e_kg"] == total(plain)["co2e_kg"]
    gpus = {r["group"]: r for r in with_embodied["rows"]}["gpu"]
    assert gpus["embodied_scope3_co2e_kg"] == pytest.approx((1 + 3 / 7) * 1500 / (5 * 8766), abs=1e-6)
    assert total(plain)["embodied_scope3_co2e_kg"] is None
    assert formats.to_csv(plain).splitlines()[0] == formats.to_csv(with_embodied).splitlines()[0]
    jsonschema.validate(with_embodied, SCHEMA)


def test_csv_parses_back_to_the_same_numbers_and_both_match_their_schemas(reader: readonly.Reader) -> None:
    document = build(reader, "2026-01", "partition", top=2)
    jsonschema.validate(document, SCHEMA)
    assert json.loads(formats.to_json(document)) == document
    for part, columns in formats.PARTS.items():
        parsed = list(csv.DictReader(io.StringIO(formats.to_csv(document, part))))
        assert parsed, part
        for line, entry in zip(parsed, document[part], strict=True):
            jsonschema.validate(line, {**CSV_SCHEMA, "$ref": f"#/$defs/{part}"})
            assert list(line) == list(entry) == list(columns)  # the same names, in the same order
            for key, value in entry.items():
                cell = line[key]
                assert (None if cell == "" else type(value)(cell) if value is not None else cell) == value
    table = formats.to_table(document)
    assert "Europe/Berlin" in table
    assert "location-based scope 2" in table
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "DRAM kWh" not in table
    assert "DRAM kWh" in formats.to_table(document, wide=True)


def test_csv_numbers_are_plain_decimals() -> None:
    assert [formats.plain(v) for v in (5e-06, 1e-07, 12.0, 0.1 + 0.2, -0.0, 1234567.5, None, 3)] == [
        "0.000005",
        "0",
        "12",
        "0.3",
        "0",
        "1234567.5",
        "",
        "3",
    ]


def concatenated(texts: list[str]) -> list[dict[str, str]]:
    """CSV files joined as `pandas.concat(map(read_csv, files))` joins them: each with its header."""
    return [line for text in texts for line in csv.DictReader(io.StringIO(text))]


def test_two_months_of_csv_concatenated_sum_to_the_reports_totals(reader: readonly.Reader) -> None:
    """The rows of January and February, loaded one file after the other, sum to their two totals,
    and an account named "total" is a row like any other."""
    documents = [build(reader, month) for month in ("2026-01", "2026-02")]
    lines = concatenated([formats.to_csv(d) for d in documents])
    totals = concatenated([formats.to_csv(d, "totals") for d in documents])
    assert {line["month"] for line in lines} == {"2026-01", "2026-02"}
    assert all(line["cluster"] == "hpc" and line["period_start"] for line in lines)
    for column in ("jobs", "cpu_core_hours", "it_kwh", "facility_kwh", "co2e_kg"):
        expected = sum(total(d)[column] for d in documents)
        assert sum(float(line[column]) for line in lines) == pytest.approx(expected, abs=1e-5)
        assert sum(float(line[column]) for line in totals) == pytest.approx(expected, abs=1e-9)
    both = build(reader, "2026-01,2026-02")
    assert (
        formats.to_csv(both) == formats.to_csv(documents[0]) + formats.to_csv(documents[1]).split("\n", 1)[1]
    )


def test_two_months_of_csv_load_in_pandas_with_sums_equal_to_the_totals(reader: readonly.Reader) -> None:
    import pandas

    documents = [build(reader, month) for month in ("2026-01", "2026-02")]
    frame = pandas.concat([pandas.read_csv(io.StringIO(formats.to_csv(d))) for d in documents])
    for column in ("jobs", "it_kwh", "facility_kwh", "co2e_kg"):
        assert frame[column].sum() == pytest.approx(sum(total(d)[column] for d in documents), abs=1e-5)
    assert set(frame["month"]) == {"2026-01", "2026-02"}


def test_an_account_named_total_is_a_row_not_the_total(tmp_path: Path) -> None:
    store = jobdb.open_store(f"sqlite:///{tmp_path / 'total.db'}")
    jobdb.store_jobs(store, [Job(1, start=JAN31, account="total"), Job(2, start=JAN31)], SETTINGS)
    store.close()
    reader = readonly.Reader.open(f"sqlite:///{tmp_path / 'total.db'}")
    try:
        document = build(reader, "2026-01")
    finally:
        reader.close()
    rows = {r["group"]: r for r in document["rows"]}
    assert set(rows) == {"total", "physics"}
    assert rows["total"]["co2e_kg"] < total(document)["co2e_kg"]
    assert [line["group"] for line in csv.DictReader(io.StringIO(formats.to_csv(document)))] == [
        r["group"] for r in document["rows"]
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01..2026-03", ["2026-01", "2026-02", "2026-03"]),
        ("2026-03,2026-01,2026-03", ["2026-01", "2026-03"]),
        ("2025-11..2026-02,2026-05", ["2025-11", "2025-12", "2026-01", "2026-02", "2026-05"]),
        ("2026-06..2999-01", None),  # up to the current month
    ],
)
def test_ranges_and_lists_of_months(text: str, expected: list[str] | None) -> None:
    now = time.time()
    found = [m.name for m in monthly.resolve_months(text, BERLIN, now)]
    if expected is None:
        assert found[0] == "2026-06"
        assert found[-1] == months.containing(now, BERLIN).name
    else:
        assert found == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-03..2026-01", "the range ends before it starts"),
        ("2026-01..", "not a month"),
        ("2026-01...2026-02", "not a month"),
        ("2999-01..2999-02", "in the future"),
        ("2000-01..2026-01", "at most 120 months"),
    ],
)
def test_bad_ranges_are_refused(text: str, message: str) -> None:
    with pytest.raises(monthly.ReportError, match=message):
        monthly.resolve_months(text, BERLIN, time.time())


def test_a_period_has_a_row_per_month_and_group_that_add_up_to_each_month(reader: readonly.Reader) -> None:
    quarter = build(reader, "2026-01..2026-03", top=1)
    jsonschema.validate(quarter, SCHEMA)
    assert quarter["metadata"]["months"] == ["2026-01", "2026-02", "2026-03"]
    assert quarter["metadata"]["period"]["start"] == "2026-01-01T00:00:00+01:00"
    assert quarter["metadata"]["period"]["end"] == "2026-04-01T00:00:00+02:00"
    for month in quarter["metadata"]["months"]:
        alone = build(reader, month)
        assert [r for r in quarter["rows"] if r["month"] == month] == alone["rows"]
        assert [t for t in quarter["totals"] if t["month"] == month] == alone["totals"]
    tops = {(e["month"], e["group"]): e["item"] for e in quarter["top_jobs"]}
    assert tops[("2026-03", "chem")] == "2"
    assert tops[("2026-01", "bio")] in ("4250", "4251")
    users = [e for e in quarter["top_users"] if e["month"] == "2026-01" and e["group"] == "physics"]
    assert [(u["item"], u["place"]) for u in users] == [("alice", 1)]
    assert users[0]["co2e_kg"] == next(
        r["co2e_kg"] for r in quarter["rows"] if r["month"] == "2026-01" and r["group"] == "physics"
    )


def test_kg_co2e_is_split_by_emission_factor_and_gas(tmp_path: Path) -> None:
    """GB's series counts direct CO2 alone; where it is missing the zone's yearly average (lifecycle
    CO2e) carries the energy. A job inside the series is direct CO2, a job in February lifecycle CO2e,
    a job running past the series' end both: mixed. Never silently one figure."""
    gb = Accounting(zone="GB", pue=1.2, timezone=BERLIN)
    store = jobdb.open_store(f"sqlite:///{tmp_path / 'gb.db'}")
    series = [dataclasses.replace(p, zone="GB", source="gb", scope="direct") for p in jobdb.day_series()]
    store.upsert_intensity(series)
    inside, past_end = jobdb.DAY + 2 * HOUR, jobdb.DAY + 25.5 * HOUR
    jobdb.store_jobs(
        store, [Job(1, start=inside), Job(2, start=past_end), Job(3, start=JAN31 + 23 * HOUR)], gb
    )
    store.close()
    reader = readonly.Reader.open(f"sqlite:///{tmp_path / 'gb.db'}")
    try:
        document = build(reader, "2026-01..2026-02", "user")
    finally:
        reader.close()
    jsonschema.validate(document, SCHEMA)
    january, february = document["totals"]
    assert january["direct_co2_kg"] > 0
    assert january["mixed_basis_kg"] > 0
    assert january["lifecycle_co2e_kg"] == 0
    assert february["lifecycle_co2e_kg"] == february["co2e_kg"] > 0
    for entry in (*document["rows"], *document["totals"]):
        split = sum(
            entry[k] for k in ("lifecycle_co2e_kg", "direct_co2e_kg", "direct_co2_kg", "mixed_basis_kg")
        )
        assert split == pytest.approx(entry["co2e_kg"], abs=1e-5)
    bases = {b["source"]: (b["emission_factor"], b["gas"]) for b in document["metadata"]["emission_bases"]}
    assert bases["gb"] == ("direct", "CO2")
    assert set(bases.values()) == {("direct", "CO2"), ("lifecycle", "CO2e")}
    table = formats.to_table(document)
    assert "gb: direct CO2" in table
    assert "adds figures of different bases" in table


def test_market_based_figures_use_the_configured_contractual_factor(reader: readonly.Reader) -> None:
    supplier = MarketFactor(50.0, "supplier mix 2026", start=dt.date(2026, 2, 1))
    ppa = MarketFactor(0.0, "PPA wind", cluster="hpc", start=dt.date(2026, 3, 1), end=dt.date(2026, 4, 1))
    document = build(reader, "2026-01..2026-04", market=(supplier, ppa))
    jsonschema.validate(document, SCHEMA)
    market = {t["month"]: t["market_based_co2e_kg"] for t in document["totals"]}
    facility = {t["month"]: t["facility_kwh"] for t in document["totals"]}
    assert market["2026-01"] is None  # no factor before February: not reported, not zero
    assert market["2026-02"] == pytest.approx(facility["2026-02"] * 0.05, abs=1e-6)
    assert market["2026-03"] == 0.0  # the cluster's PPA wins over the site's supplier mix
    assert market["2026-04"] == pytest.approx(facility["2026-04"] * 0.05, abs=1e-6)
    assert [f["instrument"] for f in document["metadata"]["market_based"]] == [
        "supplier mix 2026",
        "PPA wind",
    ]
    assert "market-based scope 2: supplier mix 2026 50 g/kWh from 2026-02-01" in formats.to_table(document)
    assert "no contractual factor configured" in formats.to_table(build(reader, "2026-01"))


def test_a_rerun_is_identical_unless_footprints_were_recomputed(
    store: Store, reader: readonly.Reader
) -> None:
    first, second = build(reader, "2026-01"), build(reader, "2026-01")
    assert formats.to_json(first) == formats.to_json(second)
    assert first["metadata"]["recomputed"]["footprints"] == 0
    join.recompute(store, Accounting(zone="DE", pue=1.3, timezone=BERLIN), None)
    third = build(reader, "2026-01")
    assert third["metadata"]["recomputed"]["footprints"] > 0
    assert third["metadata"]["generated_at"] != first["metadata"]["generated_at"]


def test_recompute_fills_months_of_footprints_stored_without_them(
    store: Store, reader: readonly.Reader
) -> None:
    store.db.execute("DELETE FROM footprint_months")
    versions = {p: store.footprint(p)["version"] for p in store.parts()}
    result = join.recompute(store, SETTINGS, None)
    assert result.changed == 0
    assert {p: store.footprint(p)["version"] for p in store.parts()} == versions
    assert store.footprint_months(store.footprint(store.parts()[0])["footprint_id"])
    january = result.changes["2026-01", "hpc", "physics"]
    assert (january.co2e_g_before, january.facility_j_before) == (0, 0)  # no months stored before
    physics = {r["group"]: r for r in build(reader, "2026-01")["rows"]}["physics"]
    assert january.co2e_g_after == pytest.approx(1000 * physics["co2e_kg"], abs=1e-3)


def test_recompute_in_another_time_zone_moves_energy_between_months(store: Store) -> None:
    """Job 1 ran 22:00-24:00 UTC on 31 January: in Berlin one hour each side of February, in UTC all
    January; the footprint is unchanged, its months are cut anew and the change says so."""
    result = join.recompute(store, Accounting(zone="DE", pue=1.2, timezone="UTC"), None, "user")
    assert result.changed == 0
    january, february = result.changes["2026-01", "hpc", "alice"], result.changes["2026-02", "hpc", "alice"]
    moved = january.co2e_g_after - january.co2e_g_before
    assert moved > 0
    assert february.co2e_g_before - february.co2e_g_after == pytest.approx(moved)
    assert sum(c.co2e_g_after - c.co2e_g_before for c in result.changes.values()) == pytest.approx(
        0, abs=1e-9
    )
    assert join.recompute(store, Accounting(zone="DE", pue=1.2, timezone="UTC"), None).changes == {}


def test_a_bad_month_a_future_month_and_an_unknown_grouping_are_refused(reader: readonly.Reader) -> None:
    for month, by, message in (
        ("2026-1", "account", "not a month"),
        ("2999-01", "account", "in the future"),
        ("2026-01", "project", "choose one of"),
    ):
        with pytest.raises(monthly.ReportError, match=message):
            build(reader, month, by)
    assert issubclass(monthly.ReportError, JobcarbonError)
    assert monthly.ReportError.exit_code == 1


def test_both_backends_give_the_same_report_in_every_format(tmp_path: Path, postgres_url: str) -> None:
    """Same rows in the same order, same rounding, same types: JSON, CSV, table and the HTML page's
    intensity curve alike. Only `generated_at` differs: the newest footprint's computation time."""
    factors = Embodied(gpu_kg_co2e=1500.0, gpu_lifetime_years=5.0, node_kg_co2e=2000.0)
    rendered: list[dict[tuple[str, ...], str]] = []
    for url in (f"sqlite:///{tmp_path / 'same.db'}", postgres_url):
        fill(url).close()
        opened = readonly.Reader.open(url)
        try:
            outputs = {}
            for month in MONTHS:
                for by in monthly.BY:
                    document = build(opened, month, by, embodied=factors, top=2)
                    curves = monthly.intensity_curves(opened, document)
                    assert bool(curves.get("DE")) == (month == "2026-01")
                    outputs[month, by, "curves"] = repr(curves)  # with the types: 0 is not 0.0
                    document["metadata"]["generated_at"] = None
                    jsonschema.validate(document, SCHEMA)
                    for name, render in formats.FORMATS.items():
                        outputs[month, by, name] = render(document)
                    for part in formats.PARTS:
                        outputs[month, by, part] = formats.to_csv(document, part)
            rendered.append(outputs)
        finally:
            opened.close()
    on_sqlite, on_postgres = rendered
    assert len(on_sqlite) == len(MONTHS) * len(monthly.BY) * (1 + len(formats.FORMATS) + len(formats.PARTS))
    for key, expected in on_sqlite.items():
        assert on_postgres[key] == expected, key


def test_clusters_and_recomputed_footprints_are_listed_in_code_point_order(db_url: str) -> None:
    """As SQLite sorts text, whatever the PostgreSQL server's collation: one created with a linguistic
    locale (en_US.UTF-8, ICU "en") would put "atlas" before "Vega" and "nodea" before "nodeB"."""
    store = jobdb.open_store(db_url)
    try:
        if db_url.startswith("postgresql"):
            for table, column in (("jobs", "cluster"), ("job_parts", "node")):
                store.db.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT COLLATE "en-x-icu"')
        clusters, nodes = ("atlas", "Vega"), ("nodea", "nodeB")
        jobdb.store_jobs(store, [Job(8, cluster=c, node=n, start=JAN31) for c in clusters for n in nodes])
        join.recompute(store, Accounting(zone="DE", pue=1.3, timezone=BERLIN), None)
    finally:
        store.close()
    reader = readonly.Reader.open(db_url)
    try:
        meta = build(reader, "2026-01")["metadata"]
    finally:
        reader.close()
    assert meta["clusters"] == ["Vega", "atlas"]
    assert [(r["cluster"], r["node"]) for r in meta["recomputed"]["listed"]] == [
        ("Vega", "nodeB"),
        ("Vega", "nodea"),
        ("atlas", "nodeB"),
        ("atlas", "nodea"),
    ]


def test_measured_counts_only_counter_joules_and_every_figure_has_a_band(reader: readonly.Reader) -> None:
    document = build(reader, "2026-01", "partition", top=3)
    gpus = {r["group"]: r for r in document["rows"]}["gpu"]
    shares = [gpus[f"{m}_energy_share"] for m in ("measured", "integrated", "apportioned", "estimated")]
    assert sum(shares) == pytest.approx(1.0, abs=1e-5)
    assert gpus["apportioned_energy_share"] > 0  # DRAM is a share of the node's counter: not measured
    assert gpus["measured_energy_share"] < 1 - gpus["estimated_energy_share"] - 0.01
    for entry in (*document["rows"], *document["totals"]):
        for name in ("co2e_kg", "it_kwh", "facility_kwh"):
            assert entry[f"{name}_low"] <= entry[name] <= entry[f"{name}_high"]
    for entry in document["top_jobs"]:
        assert entry["co2e_kg_low"] <= entry["co2e_kg"] <= entry["co2e_kg_high"]
    for end in ("co2e_kg_low", "co2e_kg_high", "facility_kwh_low", "facility_kwh_high"):  # lows and highs add
        assert total(document)[end] == pytest.approx(sum(r[end] for r in document["rows"]), abs=1e-5)
    assert document["metadata"]["uncertainty"]["energy"]["estimated"]["high"] == 2.0
    assert "uncertainty 2026-01" in formats.to_table(document)
