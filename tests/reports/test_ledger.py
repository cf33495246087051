"""The node ledger in the monthly report, from the simulated node's own records: jobs + remainder =
node IT energy per month exactly after rounding, x PUE = facility energy, the ledger's jobs part within
0.5 % of the job records, the proportional policy's shares adding up, and `--reconcile` with a meter."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from slurm_plugin import config as config_module
from slurm_plugin.accounting import join, months
from slurm_plugin.accounting.ingest import ingest_outbox
from slurm_plugin.accounting.node_ingest import ingest_node_outbox
from slurm_plugin.cli import main
from slurm_plugin.cli.report import answer
from slurm_plugin.query.visibility import Scope
from slurm_plugin.reports import ledger
from slurm_plugin.storage import Store, readonly
from tests.node.test_ledger_agent import LEDGER, Counters, _run
from tests.simnode import SimNode, driven_agent

SETTINGS = "accounting:\n  zone: DE\n  pue: 1.25\n"


@pytest.fixture
def site(tmp_path: Path) -> tuple[SimNode, config_module.Config, Counters]:
    """The simulated node after an idle spell, a job and another idle spell, its outbox ingested."""
    node = SimNode(tmp_path, interval_s=60, extra_config=LEDGER + SETTINGS)
    (tmp_path / "config.yaml").write_text(
        (tmp_path / "config.yaml").read_text() + f"database:\n  url: sqlite:///{tmp_path / 'db.sqlite'}\n"
    )
    settings = config_module.load(node.config)
    agent = driven_agent(node)
    counters = Counters(node)
    try:
        _run(node, agent, counters)
    finally:
        agent._close()
    store = Store.open(settings.database.url, 5.0)
    try:
        assert ingest_outbox(
            store, node.outbox, tmp_path / "q", join.accountant(store, settings.accounting)
        ).stored
        assert ingest_node_outbox(store, node.outbox, tmp_path / "q").stored
    finally:
        store.close()
    return node, settings, counters


def report(settings: config_module.Config, everything: bool = True) -> dict[str, Any]:
    month = months.containing(time.time(), "UTC").name
    reader = readonly.Reader.open(settings.database.url)
    try:
        request = {"months": month, "by": "account", "top": 0}
        return answer(request, reader, Scope(everything, 0), settings)["report"]
    finally:
        reader.close()


def test_jobs_plus_remainder_is_the_node_per_month_and_pue_makes_facility(
    site: tuple[SimNode, config_module.Config, Counters],
) -> None:
    _, settings, counters = site
    (total,) = report(settings)["ledger"]["totals"]
    assert round(total["jobs_kwh"] + total["remainder_kwh"], 6) == total["measured_kwh"]
    truth_j = (counters.values[-1][0] - counters.values[0][0]) + (
        counters.values[-1][1] - counters.values[0][1]
    )
    assert total["measured_kwh"] == pytest.approx(truth_j / 3.6e6, abs=2e-6)
    assert total["facility_kwh"] == pytest.approx(1.25 * total["measured_kwh"], abs=2e-6)
    assert round(total["jobs_facility_kwh"] + total["remainder_facility_kwh"], 6) == total["facility_kwh"]
    assert total["jobs_kwh"] == pytest.approx(total["job_records_kwh"], rel=0.005)
    assert 0 < total["jobs_kwh"] < total["measured_kwh"]
    assert total["excess_kwh"] == 0
    assert total["nodes"] == 1


def test_the_proportional_policy_shares_the_remainder_and_keeps_the_idle_node_apart(
    site: tuple[SimNode, config_module.Config, Counters],
) -> None:
    _, settings, _ = site
    section = report(settings)["ledger"]
    (total,) = section["totals"]
    shares = {s["group"]: s for s in section["shares"]}
    assert set(shares) == {"physics", ledger.IDLE}
    assert shares["physics"]["remainder_kwh"] > 0
    assert shares[ledger.IDLE]["remainder_kwh"] > 0  # the idle spells before and after the job
    assert round(sum(s["remainder_kwh"] for s in section["shares"]), 6) == total["remainder_kwh"]
    physics = shares["physics"]
    assert physics["with_remainder_kwh"] == round(physics["jobs_kwh"] + physics["remainder_kwh"], 6)


def test_a_viewer_of_some_jobs_gets_no_ledger(site: tuple[SimNode, config_module.Config, Counters]) -> None:
    _, settings, _ = site
    assert "ledger" not in report(settings, everything=False)


def test_reconcile_compares_the_ledger_with_the_site_meter(
    site: tuple[SimNode, config_module.Config, Counters], capsys: pytest.CaptureFixture[str]
) -> None:
    node, settings, _ = site
    (total,) = report(settings)["ledger"]["totals"]
    meter = round(total["facility_kwh"] * 1.1, 6)
    month = total["month"]
    argv = [
        "--config",
        str(node.config),
        "report",
        "--month",
        month,
        "--reconcile",
        "--meter-kwh",
        str(meter),
    ]
    assert main.main([*argv, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["meter"]["ledger_facility_kwh"] == total["facility_kwh"]
    assert found["meter"]["difference_kwh"] == pytest.approx(meter - total["facility_kwh"], abs=1e-6)
    assert main.main(argv) == 0
    assert "unaccounted (+9.1% of the meter)" in capsys.readouterr().out


def test_the_html_report_shows_jobs_and_remainder_reconciling(
    site: tuple[SimNode, config_module.Config, Counters],
) -> None:
    report_html = pytest.importorskip(
        "slurm_plugin.reports.html", reason="matplotlib (jobcarbon[report]) absent"
    )
    _, settings, _ = site
    document = report(settings)
    page = report_html.render(document, {})
    (total,) = document["ledger"]["totals"]
    assert 'id="ledger-totals"' in page
    for key in ("jobs_kwh", "remainder_kwh", "measured_kwh", "facility_kwh"):
        assert f"<td>{total[key]:,.3f}</td>" in page
    assert 'id="ledger-shares"' in page


def test_the_section_and_its_csv_parts_match_their_schemas(
    site: tuple[SimNode, config_module.Config, Counters],
) -> None:
    import csv
    import io

    from slurm_plugin.reports import formats
    from tests.reports.test_monthly import CSV_SCHEMA, SCHEMA

    jsonschema = pytest.importorskip("jsonschema")
    _, settings, _ = site
    document = report(settings)
    jsonschema.validate(document, SCHEMA)
    for part, entries in (
        ("ledger", document["ledger"]["totals"]),
        ("ledger_shares", document["ledger"]["shares"]),
    ):
        parsed = list(csv.DictReader(io.StringIO(formats.to_csv(document, part))))
        assert len(parsed) == len(entries)
        for line in parsed:
            jsonschema.validate(line, {**CSV_SCHEMA, "$ref": f"#/$defs/{part}"})
    assert "Node ledger" in formats.to_table(document)
