"""`jobcarbon report`: formats, periods, CSV parts, visibility, --output with placeholders, and one-line
errors with exit 1."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from slurm_plugin.cli import main
from tests import jobdb
from tests.reports.test_monthly import SETTINGS, jobs


@pytest.fixture
def configured(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration naming a database on SQLite and on PostgreSQL in turn (`db_url`)."""
    store = jobdb.open_store(db_url)
    jobdb.store_jobs(store, jobs(), SETTINGS)
    store.close()
    config = tmp_path / "jobcarbon.yaml"
    config.write_text(
        f"cluster: hpc\ndatabase:\n  url: {json.dumps(db_url)}\n"  # JSON's string is YAML's too
        "accounting:\n  zone: DE\n  pue: 1.2\n  timezone: Europe/Berlin\n"
    )
    monkeypatch.setenv("JOBCARBON_CONFIG", str(config))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_csv_and_json_on_stdout(configured: Path, capsys) -> None:
    code, out, _ = run(capsys, "report", "--month", "2026-01")
    assert code == 0
    assert "physics" in out
    assert "(total)" in out
    code, out, _ = run(capsys, "report", "--month", "2026-01", "--by", "user", "--format", "csv")
    users = {row["group"]: int(row["jobs"]) for row in csv.DictReader(io.StringIO(out))}
    assert users == {"alice": 4, "carol": 2, "bob": 0}  # bob's job ran in March; no total among the rows
    code, out, _ = run(capsys, "report", "--month", "2026-01", "--by", "group", "--format", "json")
    document = json.loads(out)
    assert document["schema"] == "jobcarbon/monthly-report/2"
    # Labelled "name (gid)", or the bare gid where the host has no such group; largest CO2e first.
    gids = [(row["group"].split(" (")[-1].rstrip(")"), row["jobs"]) for row in document["rows"]]
    assert gids == [("1000", 4), ("1002", 2), ("1001", 0)]


def test_json_alias_is_format_json(configured: Path, capsys) -> None:
    as_json = run(capsys, "report", "--month", "2026-01", "--json")
    assert as_json == run(capsys, "report", "--month", "2026-01", "--format", "json")
    assert json.loads(as_json[1])["schema"] == "jobcarbon/monthly-report/2"


def test_output_fills_in_month_and_grouping(configured: Path, capsys) -> None:
    (configured / "reports").mkdir()
    target = configured / "reports" / "{month}-{by}.{format}"
    args = ("report", "--month", "2026-02", "--by", "partition", "--format", "json", "--output", str(target))
    assert run(capsys, *args) == (0, "", "")
    written = configured / "reports" / "2026-02-partition.json"
    assert json.loads(written.read_text())["metadata"]["months"] == ["2026-02"]
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary file left


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("--month", "2026-1"),
            "jobcarbon: --month '2026-1' is not a month (YYYY-MM) (or 'last', a range A..B or a list A,B)\n",
        ),
        (("--month", "2999-12"), "jobcarbon: --month 2999-12 is in the future (time zone Europe/Berlin)\n"),
        (
            ("--month", "2026-01", "--by", "project"),
            "jobcarbon: --by 'project': choose one of account, user, group, partition\n",
        ),
        (("--year", "2999"), "jobcarbon: --year 2999 has not started yet (time zone Europe/Berlin)\n"),
        (
            ("--quarter", "2999Q2"),
            "jobcarbon: --quarter 2999Q2 has not started yet (time zone Europe/Berlin)\n",
        ),
        (
            ("--month", "2026-03..2026-01"),
            "jobcarbon: --month 2026-03..2026-01: the range ends before it starts\n",
        ),
    ],
)
def test_bad_arguments_are_one_line_and_exit_1(configured: Path, capsys, argv, message) -> None:
    assert run(capsys, "report", *argv) == (1, "", message)


@pytest.mark.parametrize(
    ("template", "code", "message"),
    [
        ("{bogus}.csv", 2, "unknown field {bogus} (use {month}, {by}, {format} or {part})"),
        ("{}.csv", 2, "unknown field {} (use {month}, {by}, {format} or {part})"),
        ("{month.csv", 2, "expected '}' before end of string (write a literal brace as {{ or }})"),
        ("missing/{month}.csv", 1, "directory {dir}/missing does not exist"),
    ],
    ids=["unknown-field", "positional", "unclosed", "missing-directory"],
)
def test_a_bad_output_path_is_one_line_and_nothing_is_created(
    configured: Path, capsys, template: str, code: int, message: str
) -> None:
    target = str(configured / template)
    result = run(capsys, "report", "--month", "2026-02", "--output", target)
    shown = target.replace("{month}", "2026-02")
    assert result == (code, "", f"jobcarbon: --output {shown}: {message.replace('{dir}', str(configured))}\n")
    assert not list(configured.rglob("*.csv"))
    assert not (configured / "missing").exists()


def test_output_dash_is_standard_output(configured: Path, capsys) -> None:
    code, out, _ = run(capsys, "report", "--month", "2026-02", "--format", "json", "--output", "-")
    assert (code, json.loads(out)["metadata"]["months"]) == (0, ["2026-02"])
    assert not (configured / "-").exists()


@pytest.mark.parametrize(
    ("argv", "months"),
    [
        (("--quarter", "2026Q1"), ["2026-01", "2026-02", "2026-03"]),
        (("--month", "2025-12,2026-02"), ["2025-12", "2026-02"]),
        (("--month", "2025-11..2026-01"), ["2025-11", "2025-12", "2026-01"]),
        (("--year", "2025"), [f"2025-{m:02d}" for m in range(1, 13)]),
    ],
)
def test_years_quarters_ranges_and_lists(configured: Path, capsys, argv, months) -> None:
    code, out, err = run(capsys, "report", *argv, "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["metadata"]["months"] == months
    assert [t["month"] for t in document["totals"]] == months


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--year", "26"), "jobcarbon: --year '26' is not a year (YYYY)\n"),
        (("--quarter", "2026Q5"), "jobcarbon: --quarter '2026Q5' is not a quarter (YYYYQ1 to YYYYQ4)\n"),
        (
            ("--month", "2026-01", "--part", "totals"),
            "jobcarbon: --part chooses a part of the CSV: use it with --format csv\n",
        ),
        (("--month", "2026-01", "--top", "1000"), "jobcarbon: --top must be from 0 to 100\n"),
    ],
)
def test_bad_periods_and_options_are_usage_errors(configured: Path, capsys, argv, message) -> None:
    assert run(capsys, "report", *argv) == (2, "", message)


def test_csv_parts_and_the_output_name_of_a_period(configured: Path, capsys) -> None:
    (configured / "out").mkdir()
    target = str(configured / "out" / "{month}-{by}-{part}.{format}")
    for part in ("rows", "totals", "gpu_models", "top_jobs"):
        argv = (
            "report",
            "--quarter",
            "2026Q1",
            "--format",
            "csv",
            "--part",
            part,
            "--top",
            "1",
            "--output",
            target,
        )
        assert run(capsys, *argv) == (0, "", "")
    written = configured / "out" / "2026-01..2026-03-account-totals.csv"
    totals = list(csv.DictReader(io.StringIO(written.read_text())))
    assert [t["month"] for t in totals] == ["2026-01", "2026-02", "2026-03"]
    rows = list(csv.DictReader((configured / "out" / "2026-01..2026-03-account-rows.csv").open()))
    for total in totals:
        in_month = [r for r in rows if r["month"] == total["month"]]
        assert sum(float(r["co2e_kg"]) for r in in_month) == pytest.approx(float(total["co2e_kg"]), abs=1e-5)
    models = (configured / "out" / "2026-01..2026-03-account-gpu_models.csv").read_text().splitlines()
    assert models[0] == "month,period_start,period_end,cluster,group,gpu_model,gpu_hours"
    assert len(models) == 3  # the A100 and the MIG slice, in January


def test_a_user_without_visibility_sees_only_their_own_usage(
    configured: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read directly (no query service): uid 1001 (bob) sees his chem job and no other account."""
    config = configured / "jobcarbon.yaml"
    config.write_text(config.read_text() + "visibility:\n  mode: own\n")
    monkeypatch.setattr("slurm_plugin.cli.report.os.getuid", lambda: 1001)
    _, out, _ = run(capsys, "report", "--month", "2026-03..2026-04", "--by", "user", "--json")
    document = json.loads(out)
    assert {r["group"] for r in document["rows"]} == {"bob"}
    assert [t["jobs"] for t in document["totals"]] == [1, 1]  # his one job crosses into April
    assert document["metadata"]["visibility"] == "the jobs of uid 1001"
    monkeypatch.setattr("slurm_plugin.cli.report.os.getuid", lambda: 0)
    _, out, _ = run(capsys, "report", "--month", "2026-03..2026-04", "--by", "user", "--json")
    assert {r["group"] for r in json.loads(out)["rows"]} == {"alice", "bob", "carol"}


def test_last_month_is_accepted(configured: Path, capsys) -> None:
    code, out, _ = run(capsys, "report", "--month", "last", "--format", "json")
    assert code == 0
    assert json.loads(out)["metadata"]["closed"] is True


def test_a_missing_database_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'absent.db'}\n")
    monkeypatch.setenv("JOBCARBON_CONFIG", str(config))
    code, _, err = run(capsys, "report", "--month", "2026-01")
    assert code == 1
    assert err.startswith("jobcarbon: ")
    assert err.count("\n") == 1
