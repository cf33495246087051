"""`jobcarbon doctor` on a simulated node: one check per source, and whether records can be delivered."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_plugin import config
from slurm_plugin.cli import doctor
from slurm_plugin.storage import Store, dialect
from tests.simnode import SimNode


def node_with(tmp_path: Path, database: str) -> SimNode:
    return SimNode(tmp_path, extra_config=f"database:\n{database}")


def by_name(checks: list[doctor.Check]) -> dict[str, list[doctor.Check]]:
    found: dict[str, list[doctor.Check]] = {}
    for check in checks:
        found.setdefault(check.name, []).append(check)
    return found


def test_every_source_is_checked_and_a_simulated_node_is_usable(tmp_path: Path) -> None:
    node = node_with(tmp_path, f"  url: sqlite:///{tmp_path / 'absent.db'}\n")
    checks = by_name(doctor.run(config.load(node.config)))
    assert set(checks) >= {"config", "procfs", "cgroup", "rapl", "nvml", "spool", "outbox", "database"}
    assert checks["config"][0].status == "ok"
    assert checks["cgroup"][0].status == "ok"
    assert not [c for found in checks.values() for c in found if c.status == "error"]


def test_a_database_the_node_can_reach_is_ok_on_either_backend(tmp_path: Path, db_url: str) -> None:
    Store.open(db_url, 5.0).close()
    node = node_with(tmp_path, f"  url: '{db_url}'\n")
    (check,) = by_name(doctor.run(config.load(node.config)))["database"]
    assert check.status == "ok"
    assert check.detail.startswith(f"{dialect.backend_of(db_url)} at ")


@pytest.mark.parametrize(
    ("database", "status", "words"),
    [
        ("  url: sqlite:////nonexistent/jobcarbon.db\n", "warning", "records stay in the outbox"),
        ("  url: postgresql://nobody@127.0.0.1:1/none\n", "warning", "records stay in the outbox"),
        ("  deliver_from_nodes: false\n", "absent", "jobcarbon ingest"),
    ],
    ids=["missing-file", "no-server", "delivery-off"],
)
def test_a_database_out_of_reach_is_a_warning_not_an_error(
    tmp_path: Path, database: str, status: str, words: str
) -> None:
    (check,) = by_name(doctor.run(config.load(node_with(tmp_path, database).config)))["database"]
    assert (check.status, words in check.detail) == (status, True)


def test_each_registered_sensor_is_probed_and_a_broken_one_hides_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(config: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setitem(doctor.NODE_SENSORS, "rapl", broken)
    checks = by_name(doctor.run(config.load(node_with(tmp_path, "  deliver_from_nodes: false\n").config)))
    assert (checks["rapl"][0].status, checks["rapl"][0].detail) == ("warning", "RuntimeError: a bug")
    assert checks["procfs"][0].status == "ok"
    assert "nvml" in checks
