"""The node commands through `jobcarbon`'s main: doctor and records in each format, agent's exec."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import pytest

from slurm_plugin import config, config_location, record
from slurm_plugin.cli import main
from tests.simnode import SimNode
from tests.storage.conftest import make_record


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimNode:
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-scontrol"))  # doctor's Slurm checks: one warning
    return SimNode(tmp_path, extra_config=f"database:\n  url: sqlite:///{tmp_path / 'absent.db'}\n")


# --- doctor ------------------------------------------------------------------------------------


def test_doctor_table_has_a_line_per_check(node: SimNode, capsys) -> None:
    code, out, _ = run(capsys, "--config", str(node.config), "doctor")
    assert code == 0
    first = out.splitlines()[0].split(maxsplit=2)
    assert first == ["config", "ok", str(node.config)]


def test_doctor_json_carries_its_schema(node: SimNode, capsys) -> None:
    code, out, _ = run(capsys, "--config", str(node.config), "doctor", "--format", "json")
    document = json.loads(out)
    assert (code, document["schema"]) == (0, "jobcarbon/doctor/1")
    assert document["checks"][0] == {"name": "config", "status": "ok", "detail": str(node.config)}
    assert run(capsys, "--config", str(node.config), "doctor", "--json")[1] == out


def test_doctor_csv(node: SimNode, capsys) -> None:
    code, out, _ = run(capsys, "--config", str(node.config), "doctor", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert rows[0] == {"name": "config", "status": "ok", "detail": str(node.config)}
    assert {"procfs", "cgroup", "database"} <= {row["name"] for row in rows}


def test_doctor_reports_a_config_that_does_not_load(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampler: [\n")
    code, out, err = run(capsys, "--config", str(bad), "doctor", "--json")
    (check,) = json.loads(out)["checks"]
    assert (code, err, check["name"], check["status"]) == (1, "", "config", "error")
    assert check["detail"].startswith(f"{bad}:")


# --- records -----------------------------------------------------------------------------------


def test_records_table_and_json(node: SimNode, capsys) -> None:
    outbox = config.load(node.config).paths.outbox
    record.write(outbox, make_record(job_id=17), fsync=False)
    code, out, _ = run(capsys, "--config", str(node.config), "records", "17")
    assert (code, out.startswith("job 17 (run 0) on node001")) == (0, True)
    code, out, _ = run(capsys, "--config", str(node.config), "records", "--format", "json")
    (found,) = json.loads(out)
    assert (code, found["schema"], found["job_id"]) == (0, record.SCHEMA, 17)
    assert run(capsys, "--config", str(node.config), "records", "--json")[1] == out


def test_records_of_an_unknown_job_is_one_line(node: SimNode, capsys) -> None:
    outbox = config.load(node.config).paths.outbox
    assert run(capsys, "--config", str(node.config), "records", "99") == (
        1,
        "",
        f"jobcarbon: no record for job 99 in {outbox}\n",
    )


# --- agent -------------------------------------------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True])
def test_agent_is_told_its_config_file(
    node: SimNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, persistent: bool
) -> None:
    monkeypatch.setenv(config.ENV_VAR, str(tmp_path / "not-this.yaml"))
    started: list[tuple] = []
    monkeypatch.setattr(os, "execve", lambda *call: started.append(call))
    flags = ["--persistent"] if persistent else []
    main.main(["--config", str(node.config), "agent", *flags])
    ((path, argv, env),) = started
    assert (path, argv) == (sys.executable, [sys.executable, "-m", "slurm_plugin.node.agent", *flags])
    assert env[config.ENV_VAR] == str(node.config)


def test_agent_on_built_in_defaults_gets_no_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    monkeypatch.setattr(config_location, "DEFAULT_PATH", tmp_path / "absent.yaml")
    started: list[tuple] = []
    monkeypatch.setattr(os, "execve", lambda *call: started.append(call))
    main.main(["agent"])
    ((_, _, env),) = started
    assert config.ENV_VAR not in env


def test_a_records_energies_share_one_unit() -> None:
    from slurm_plugin.cli.node import _energy_line

    line = _energy_line(
        {
            "cpu": {"joules": 12_345_678.0, "method": "measured"},
            "dram": {"joules": 45_678.0, "method": "apportioned"},
            "gpu": None,
            "total_joules": 12_391_356.0,
        }
    )
    assert line == "  energy (kWh): cpu 3.43 (measured)   dram 0.0127 (apportioned)   gpu -   total 3.44"
