"""`jobcarbon`'s main: the one error boundary, settings loaded once and passed down, the format check."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from slurm_plugin import config
from slurm_plugin.cli import main
from slurm_plugin.errors import JobcarbonError


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def sqlite_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration naming an SQLite file that does not exist yet; $JOBCARBON_CONFIG unset."""
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    path = tmp_path / "jobcarbon.yaml"
    path.write_text(f"database:\n  url: sqlite:///{tmp_path / 'jobcarbon.db'}\n")
    return path


def test_an_invalid_config_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("database:\n  urll: x\n")
    code, out, err = run(capsys, "--config", str(bad), "jobs")
    assert (code, out) == (2, "")
    assert err.startswith(f"jobcarbon: {bad}:2")
    assert err.count("\n") == 1


def test_a_missing_config_named_by_the_environment_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv(config.ENV_VAR, str(tmp_path / "typo.yaml"))
    assert run(capsys, "recompute") == (2, "", f"jobcarbon: {tmp_path / 'typo.yaml'}: file not found\n")


def test_config_flag_wins_and_the_environment_is_left_alone(
    sqlite_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv(config.ENV_VAR, str(tmp_path / "not-this.yaml"))
    code, out, _ = run(capsys, "--config", str(sqlite_config), "db", "upgrade")
    assert (code, out.startswith(f"database sqlite:///{tmp_path / 'jobcarbon.db'}: ")) == (0, True)
    assert os.environ[config.ENV_VAR] == str(tmp_path / "not-this.yaml")


def test_the_settings_are_loaded_once_and_passed_to_the_command(
    sqlite_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[object] = []
    real_load = config.load
    monkeypatch.setattr(config, "load", lambda *a, **k: loaded.append(real_load(*a, **k)) or loaded[-1])
    received: list[object] = []
    parser = main.build_parser
    monkeypatch.setattr(
        main,
        "build_parser",
        lambda: _with_command(parser(), lambda args, settings: received.append(settings) or 0),
    )
    assert main.main(["--config", str(sqlite_config), "recompute"]) == 0
    assert len(loaded) == 1
    assert received == loaded
    assert received[0].source == sqlite_config  # type: ignore[attr-defined]


def _with_command(parser: argparse.ArgumentParser, run: object) -> argparse.ArgumentParser:
    """The real parser with `recompute` replaced by `run`."""
    parser._subparsers._group_actions[0].choices["recompute"].set_defaults(run=run)  # type: ignore[union-attr]
    return parser


def test_a_missing_database_is_one_line_without_a_traceback(sqlite_config: Path, capsys) -> None:
    code, out, err = run(capsys, "--config", str(sqlite_config), "intensity", "show", "--zone", "DE")
    assert (code, out) == (1, "")
    assert err.startswith("jobcarbon: database: ")
    assert "does not exist" in err
    assert err.count("\n") == 1


def test_a_project_error_keeps_its_exit_code(sqlite_config: Path, monkeypatch, capsys) -> None:
    class Refusal(JobcarbonError):
        exit_code = 3

    def refuse(args: argparse.Namespace, settings: config.Config) -> int:
        raise Refusal("refused, in one line")

    parser = main.build_parser
    monkeypatch.setattr(main, "build_parser", lambda: _with_command(parser(), refuse))
    assert run(capsys, "--config", str(sqlite_config), "recompute") == (
        3,
        "",
        "jobcarbon: refused, in one line\n",
    )


def test_a_bug_keeps_its_traceback(sqlite_config: Path, monkeypatch) -> None:
    def broken(args: argparse.Namespace, settings: config.Config) -> int:
        raise ZeroDivisionError("a bug")

    parser = main.build_parser
    monkeypatch.setattr(main, "build_parser", lambda: _with_command(parser(), broken))
    with pytest.raises(ZeroDivisionError):
        main.main(["--config", str(sqlite_config), "recompute"])


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["records", "--format", "csv"], "records has no csv form: use --format table or json"),
        (["show", "1", "--format", "csv"], "show has no csv form: use --format table or json"),
        (["jobs", "--limit", "-1"], "--limit must be from 0 to 10000"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2_before_any_work(
    sqlite_config: Path, capsys, argv: list[str], line: str
) -> None:
    # The database does not exist: the refusal comes before any attempt to open it.
    assert run(capsys, "--config", str(sqlite_config), *argv) == (2, "", f"jobcarbon: {line}\n")


def test_json_and_format_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main.main(["doctor", "--json", "--format", "csv"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_database_errors_say_so_before_and_after_they_derive_from_the_root() -> None:
    from slurm_plugin.storage.errors import StoreError

    class Rooted(StoreError, JobcarbonError):  # what issue 12 makes of StoreError
        exit_code = 1

    assert main.one_line(StoreError("x.db does not exist")) == ("database: x.db does not exist", 1)
    assert main.one_line(Rooted("x.db does not exist")) == ("database: x.db does not exist", 1)
    assert main.one_line(ValueError("a bug")) is None
