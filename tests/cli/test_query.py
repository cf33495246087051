"""`jobcarbon <jobid>`, `show` and `jobs` as whole processes: output, and one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from slurm_plugin.cli.main import with_default_command
from tests import jobdb

REPO = Path(__file__).resolve().parents[2]
CLI = "import sys; from slurm_plugin.cli.main import main; sys.exit(main())"
GOLDEN = REPO / "tests" / "fixtures" / "jobview"
SCHEMA = json.loads((REPO / "slurm_plugin" / "query" / "job_summary_schema.json").read_text())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, module_db_url: str) -> dict:
    """The scenarios and a job that measured nothing, on SQLite and on PostgreSQL in turn."""
    directory = tmp_path_factory.mktemp("cli")
    ids = jobdb.build_scenarios(module_db_url)
    store = jobdb.open_store(module_db_url)
    jobdb.store_jobs(store, [jobdb.Job(300, cpu_w=0.0, notes=["job cgroup never found"])])
    store.close()
    config = directory / "jobcarbon.yaml"
    config.write_text(f"database:\n  url: {json.dumps(module_db_url)}\nvisibility:\n  mode: all\n")
    return {"dir": directory, "ids": ids, "config": config}


def environment(config: Path, path: Path | None = None) -> dict[str, str]:
    """A bare environment for the CLI; PGPASSFILE passes (the PostgreSQL password, set by conftest)."""
    env = {"JOBCARBON_CONFIG": str(config), "PATH": str(path or "/nonexistent"), "PYTHONPATH": str(REPO)}
    return env | ({"PGPASSFILE": os.environ["PGPASSFILE"]} if "PGPASSFILE" in os.environ else {})


def sacct_answering(directory: Path, output: str) -> Path:
    """A directory to use as PATH whose `sacct` prints `output`."""
    directory.mkdir(exist_ok=True)
    (directory / "sacct").write_text(f"#!/bin/sh\nprintf '%s' '{output}'\n")
    (directory / "sacct").chmod(stat.S_IRWXU)
    return directory


def jobcarbon(*args: str, config: Path, path: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        env=environment(config, path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("jobcarbon: ")
    return lines[0]


def test_jobid_alone_prints_the_summary(site: dict) -> None:
    done = jobcarbon(str(site["ids"]["single-node"]), config=site["config"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == (GOLDEN / "single-node.txt").read_text()


def test_show_json_is_valid(site: dict) -> None:
    done = jobcarbon("show", str(site["ids"]["gpu"]), "--json", config=site["config"])
    assert done.returncode == 0, done.stderr
    jsonschema.validate(json.loads(done.stdout), SCHEMA)


def test_show_format_json_and_table_match_their_aliases(site: dict) -> None:
    job = str(site["ids"]["gpu"])
    as_json = jobcarbon("show", job, "--format", "json", config=site["config"])
    assert as_json.stdout == jobcarbon("show", job, "--json", config=site["config"]).stdout
    assert json.loads(as_json.stdout)["schema"] == "jobcarbon/job-summary/1"
    table = jobcarbon(job, "--format", "table", config=site["config"])
    assert table.stdout == jobcarbon(job, config=site["config"]).stdout


@pytest.mark.parametrize("bad", ["-1", "1;id", "9" * 5000, "4_", "+1", "12x"])
def test_malformed_ids_are_one_line(site: dict, bad: str) -> None:
    assert "is not a job id" in one_line_error(jobcarbon(bad, config=site["config"]))


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("frobnicate", "jobcarbon: unknown command 'frobnicate' (see jobcarbon --help)"),
        ("reprot", "jobcarbon: unknown command 'reprot' (did you mean 'report'? see jobcarbon --help)"),
    ],
)
def test_a_mistyped_command_is_named_as_one(site: dict, word: str, message: str) -> None:
    done = jobcarbon(word, config=site["config"])
    assert (one_line_error(done), done.returncode) == (message, 2)


def test_sacct_failure_is_one_line_without_a_doubled_prefix(site: dict, tmp_path: Path) -> None:
    path = tmp_path / "bin"
    path.mkdir()
    (path / "sacct").write_text("#!/bin/sh\necho 'sacct: fatal: no accounting storage' >&2\nexit 1\n")
    (path / "sacct").chmod(stat.S_IRWXU)
    line = one_line_error(jobcarbon("999999_1", config=site["config"], path=path))
    assert line == "jobcarbon: cannot resolve job 999999_1: sacct: fatal: no accounting storage"


def test_unknown_job_is_one_line(site: dict, tmp_path: Path) -> None:
    line = one_line_error(jobcarbon("999999", config=site["config"], path=sacct_answering(tmp_path, "")))
    assert line == "jobcarbon: no job 999999 in the jobcarbon database"


def test_unknown_job_without_sacct_is_the_same_line(site: dict) -> None:
    line = one_line_error(jobcarbon("999999", config=site["config"]))
    assert line == "jobcarbon: no job 999999 in the jobcarbon database"


def test_pending_job_is_one_line(site: dict, tmp_path: Path) -> None:
    path = sacct_answering(tmp_path, "999999|PENDING\n")
    assert "still pending" in one_line_error(jobcarbon("999999", config=site["config"], path=path))


def test_running_job_is_one_line(site: dict, tmp_path: Path) -> None:
    path = sacct_answering(tmp_path, "999999|RUNNING\n")
    assert "still running" in one_line_error(jobcarbon("999999", config=site["config"], path=path))


def test_ended_but_never_stored_is_one_line(site: dict, tmp_path: Path) -> None:
    path = sacct_answering(tmp_path, "999999|COMPLETED\n")
    assert "ended (COMPLETED) but was not measured" in one_line_error(
        jobcarbon("999999", config=site["config"], path=path)
    )


def test_stored_but_not_measured_is_one_line(site: dict) -> None:
    assert "measured nothing: job cgroup never found" in one_line_error(
        jobcarbon("300", config=site["config"])
    )


def test_array_task_resolves_through_sacct(site: dict, tmp_path: Path) -> None:
    path = sacct_answering(tmp_path, f"{site['ids']['gpu']}|COMPLETED\n")
    done = jobcarbon("777_3", "--json", config=site["config"], path=path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["job_id"] == site["ids"]["gpu"]


def test_array_task_needs_sacct(site: dict) -> None:
    assert "sacct is not installed" in one_line_error(jobcarbon("777_3", config=site["config"]))


def test_pending_array_task(site: dict, tmp_path: Path) -> None:
    path = sacct_answering(tmp_path, "778|PENDING\n")
    assert "still pending" in one_line_error(jobcarbon("777+1", config=site["config"], path=path))


def test_service_down_is_one_line(site: dict, tmp_path: Path) -> None:
    config = tmp_path / "client.yaml"
    config.write_text(f"visibility:\n  socket: {tmp_path / 'no.sock'}\n")
    assert "query service is not running" in one_line_error(jobcarbon("101", config=config))
    assert "query service is not running" in one_line_error(jobcarbon("jobs", config=config))


def test_since_after_until_is_a_usage_error(site: dict) -> None:
    done = jobcarbon("jobs", "-S", "2026-01-02", "-E", "2026-01-01", config=site["config"])
    assert one_line_error(done) == "jobcarbon: -S 2026-01-02T00:00+00:00 is after -E 2026-01-01T00:00+00:00"
    assert done.returncode == 2


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2026-01-01", "2025-12-31T23:00:00Z"),  # midnight in Berlin (UTC+1 in winter)
        ("2026-01-01T12:00", "2026-01-01T11:00:00Z"),
        ("2026-01-01T12:00+00:00", "2026-01-01T12:00:00Z"),  # an offset given wins
    ],
)
def test_since_and_until_are_read_in_the_site_time_zone(site: dict, since: str, expected: str) -> None:
    config = site["dir"] / "berlin.yaml"
    config.write_text(site["config"].read_text() + "accounting:\n  timezone: Europe/Berlin\n")
    done = jobcarbon("jobs", "-S", since, "-E", "2026-01-03", "--json", config=config)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["filters"]["since"] == expected
    assert json.loads(done.stdout)["filters"]["until"] == "2026-01-02T23:00:00Z"


def test_a_database_url_naming_a_directory_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path}\n")
    assert f"{tmp_path} is a directory: database.url names the file" in one_line_error(
        jobcarbon("jobs", config=config)
    )


def test_output_a_terminal_cannot_encode_is_replaced_not_a_traceback(site: dict) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLI, str(site["ids"]["single-node"])],
        env=environment(site["config"]) | {"PYTHONIOENCODING": "ascii"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.isascii()


def test_missing_database_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'none.db'}\n")
    assert "does not exist" in one_line_error(jobcarbon("101", config=config))


def test_jobs_table_json_and_csv(site: dict) -> None:
    common = ("jobs", "--all-users", "--since", "2026-01-01", "--until", "2026-01-02")
    table = jobcarbon(*common, config=site["config"])
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1].startswith("7 jobs: ")
    document = json.loads(jobcarbon(*common, "--json", "-A", "chemistry", config=site["config"]).stdout)
    assert [j["job_id"] for j in document["jobs"]] == [106]
    csv_lines = jobcarbon(*common, "--csv", "-u", "bob", config=site["config"]).stdout.splitlines()
    assert len(csv_lines) == 2
    assert ",106,0,bob,chemistry," in csv_lines[1]


def test_jobs_format_matches_its_aliases(site: dict) -> None:
    common = ("jobs", "--all-users", "--since", "2026-01-01", "--until", "2026-01-02")
    for fmt in ("json", "csv"):
        chosen = jobcarbon(*common, "--format", fmt, config=site["config"])
        assert chosen.returncode == 0, chosen.stderr
        assert chosen.stdout == jobcarbon(*common, f"--{fmt}", config=site["config"]).stdout
    document = json.loads(jobcarbon(*common, "--format", "json", config=site["config"]).stdout)
    assert document["schema"] == "jobcarbon/job-list/1"


def test_jobs_default_is_the_callers_own(site: dict) -> None:
    # Every stored job belongs to uid 1000 or 1001; the caller (this test) is neither, unless root's 0.
    document = json.loads(jobcarbon("jobs", "-S", "2026-01-01", "--json", config=site["config"]).stdout)
    assert document["jobs"] == []
    assert document["filters"]["mine"] is True


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["123"], ["show", "123"]),
        (["123", "--json"], ["show", "123", "--json"]),
        (["--config", "f", "123"], ["--config", "f", "show", "123"]),
        (["--config=f", "123_4"], ["--config=f", "show", "123_4"]),
        (["-1"], ["show", "--", "-1"]),
        (["jobs", "-a"], ["jobs", "-a"]),
        (["--version"], ["--version"]),
        ([], []),
    ],
)
def test_a_bare_job_id_means_show(argv: list[str], expected: list[str]) -> None:
    assert with_default_command(argv, frozenset({"show", "jobs", "serve"})) == expected


def test_the_read_path_stays_light(site: dict) -> None:
    """`jobcarbon JOBID` starts fast: no sqlite_utils (it imports numpy), requests or tabulate."""
    probe = (
        "import sys, contextlib, io; from slurm_plugin.cli.main import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()): code = main(['{site['ids']['gpu']}'])\n"
        "heavy = ('sqlite_utils', 'numpy', 'requests', 'tabulate')\n"
        "print(code, sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=environment(site["config"]),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "0 []"


def test_an_unknown_time_zone_stops_the_text_not_the_json(site: dict, tmp_path: Path) -> None:
    config = tmp_path / "mars.yaml"
    config.write_text(site["config"].read_text() + "accounting:\n  timezone: Mars/Olympus_Mons\n")
    job = str(site["ids"]["gpu"])
    assert json.loads(jobcarbon(job, "--json", config=config).stdout)["job_id"] == site["ids"]["gpu"]
    text = jobcarbon(job, config=config)
    assert text.returncode == 2
    assert one_line_error(text).endswith("accounting.timezone 'Mars/Olympus_Mons' is not a known time zone")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--fields", "jobid,bogus"), "unknown field 'bogus'"),
        (("-s", "FINISHED"), "unknown job state 'FINISHED'"),
    ],
)
def test_an_unknown_field_or_state_is_a_usage_error(site: dict, args: tuple[str, ...], problem: str) -> None:
    done = jobcarbon("jobs", *args, config=site["config"])
    assert problem in one_line_error(done)
    assert done.returncode == 2
