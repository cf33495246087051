"""`jobcarbon report`: formats, --output with placeholders, and one-line errors with exit 1."""

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
    assert "total" in out
    code, out, _ = run(capsys, "report", "--month", "2026-01", "--by", "user", "--format", "csv")
    users = {row["group"]: int(row["jobs"]) for row in csv.DictReader(io.StringIO(out))}
    assert users == {"alice": 4, "carol": 2, "bob": 0, "total": 6}  # bob's job ran in March
    code, out, _ = run(capsys, "report", "--month", "2026-01", "--by", "group", "--format", "json")
    document = json.loads(out)
    assert document["schema"] == "jobcarbon/monthly-report/1"
    # Labelled "name (gid)", or the bare gid where the host has no such group; largest CO2e first.
    gids = [(row["group"].split(" (")[-1].rstrip(")"), row["jobs"]) for row in document["rows"]]
    assert gids == [("1000", 4), ("1002", 2), ("1001", 0)]


def test_json_alias_is_format_json(configured: Path, capsys) -> None:
    as_json = run(capsys, "report", "--month", "2026-01", "--json")
    assert as_json == run(capsys, "report", "--month", "2026-01", "--format", "json")
    assert json.loads(as_json[1])["schema"] == "jobcarbon/monthly-report/1"


def test_output_fills_in_month_and_grouping(configured: Path, capsys) -> None:
    (configured / "reports").mkdir()
    target = configured / "reports" / "{month}-{by}.{format}"
    args = ("report", "--month", "2026-02", "--by", "partition", "--format", "json", "--output", str(target))
    assert run(capsys, *args) == (0, "", "")
    written = configured / "reports" / "2026-02-partition.json"
    assert json.loads(written.read_text())["metadata"]["month"] == "2026-02"
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary file left


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--month", "2026-1"), "jobcarbon: --month '2026-1' is not a month (YYYY-MM) (or 'last')\n"),
        (("--month", "2999-12"), "jobcarbon: --month 2999-12 is in the future (time zone Europe/Berlin)\n"),
        (
            ("--month", "2026-01", "--by", "project"),
            "jobcarbon: --by 'project': choose one of account, user, group, partition\n",
        ),
    ],
)
def test_bad_arguments_are_one_line_and_exit_1(configured: Path, capsys, argv, message) -> None:
    assert run(capsys, "report", *argv) == (1, "", message)


@pytest.mark.parametrize(
    ("template", "code", "message"),
    [
        ("{bogus}.csv", 2, "unknown field {bogus} (use {month}, {by} or {format})"),
        ("{}.csv", 2, "unknown field {} (use {month}, {by} or {format})"),
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
    assert (code, json.loads(out)["metadata"]["month"]) == (0, "2026-02")
    assert not (configured / "-").exists()


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
