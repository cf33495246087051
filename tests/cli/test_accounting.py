"""The accounting commands end to end through `jobcarbon`'s main: output, exit codes, database effects."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_plugin import outbox as outbox_files
from slurm_plugin.accounting import join
from slurm_plugin.cli import main
from slurm_plugin.config import Accounting
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.storage import Store, migrations
from tests.storage.conftest import START, count, make_record

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
DE_YEARLY = 342.0


class Node:
    """Paths of a configured installation in a temporary directory."""

    def __init__(self, root: Path, url: str | None = None):
        self.root = root
        self.db = root / "jobcarbon.db"  # the database file, when the URL is SQLite's default here
        self.url = url or f"sqlite:///{self.db}"
        self.outbox = root / "outbox"
        self.quarantine = root / "quarantine"
        self.config = root / "config.yaml"
        self.config.write_text(
            f"cluster: hpc\npaths:\n  spool: {root / 'spool'}\n  outbox: {self.outbox}\n"
            f"  quarantine: {self.quarantine}\n  log_file: {root / 'jobcarbon.log'}\n"
            f"database:\n  url: '{self.url}'\n  busy_timeout_s: 0.05\n"
            "accounting:\n  zone: DE\n  pue: 1.2\n"
        )

    def store(self) -> Store:
        return Store.open(self.url, 5.0, create=False)


@pytest.fixture
def node(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Node:
    """An installation whose database is SQLite or PostgreSQL in turn (`db_url`)."""
    configured = Node(tmp_path, db_url)
    monkeypatch.setenv("JOBCARBON_CONFIG", str(configured.config))
    return configured


@pytest.fixture
def store(node: Node) -> Iterator[Store]:
    Store.open(node.url, 5.0, create=True).close()
    opened = node.store()
    yield opened
    opened.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def de_point(minutes: tuple[int, int], g_per_kwh: float, **flags: bool) -> IntensityPoint:
    start, end = (T0 + dt.timedelta(minutes=m) for m in minutes)
    return IntensityPoint("DE", start, end, g_per_kwh, "electricitymaps", "lifecycle", **flags)


# --- db upgrade --------------------------------------------------------------------------------


def test_db_upgrade_creates_the_database_and_is_idempotent(node: Node, capsys) -> None:
    upgraded = f"database {node.url}: schema version {migrations.latest()}\n"
    assert run(capsys, "db", "upgrade") == (0, upgraded, "")
    assert run(capsys, "db", "upgrade") == (0, upgraded, "")
    opened = node.store()
    assert (count(opened, "schema_version"), count(opened, "jobs")) == (len(migrations.MIGRATIONS), 0)
    opened.close()


def test_db_upgrade_never_creates_a_missing_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    absent = tmp_path / "not-mounted"
    monkeypatch.setenv("JOBCARBON_CONFIG", str(Node(tmp_path, f"sqlite:///{absent}/x.db").config))
    code, out, err = run(capsys, "db", "upgrade")
    assert (code, out) == (1, "")
    assert err.startswith("jobcarbon: database: ")
    assert err.count("\n") == 1
    assert not absent.exists()


# --- ingest ------------------------------------------------------------------------------------


def test_ingest_stores_accounts_and_counts(node: Node, store: Store, capsys) -> None:
    for name in ("node001", "node002"):
        outbox_files.write(node.outbox, make_record(node=name), fsync=False)
    outbox_files.write(node.outbox, make_record(node="node003", job_id=1), fsync=False)
    outbox_files.write(node.outbox, make_record(node="node003", job_id=1), fsync=False)  # rewritten: one file
    (node.outbox / "hpc_9_0_broken.json").write_text("{")
    code, out, _ = run(capsys, "ingest")
    assert (code, out) == (0, f"{node.outbox}: 3 stored, 0 duplicates, 1 quarantined, 0 kept\n")
    assert list(node.outbox.iterdir()) == []
    assert (node.quarantine / "hpc_9_0_broken.json.reason").exists()
    for part_id in store.parts():
        found = store.footprint(part_id)
        assert found is not None
        total_j = store.part(part_id)["total_j"]
        assert found["co2e_g"] == pytest.approx(total_j * 1.2 / 3.6e6 * DE_YEARLY)
        assert found["rung"] == "zone_yearly"


def test_ingest_reads_another_outbox_and_counts_duplicates(node: Node, store: Store, capsys) -> None:
    other = node.root / "other"
    outbox_files.write(other, make_record(), fsync=False)
    assert (
        run(capsys, "ingest", "--outbox", str(other))[1]
        == f"{other}: 1 stored, 0 duplicates, 0 quarantined, 0 kept\n"
    )
    outbox_files.write(other, make_record(), fsync=False)
    assert run(capsys, "ingest", "--outbox", str(other)) == (
        0,
        f"{other}: 0 stored, 1 duplicates, 0 quarantined, 0 kept\n",
        "",
    )
    outbox_files.write(other, make_record(user="mallory"), fsync=False)  # the same part, other content
    assert run(capsys, "ingest", "--outbox", str(other)) == (
        0,
        f"{other}: 0 stored, 0 duplicates, 0 quarantined, 0 kept, 1 conflicts\n",
        "",
    )
    assert (node.quarantine / outbox_files.filename(make_record())).exists()


def test_ingest_keeps_records_while_the_database_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    node = Node(tmp_path)
    monkeypatch.setenv("JOBCARBON_CONFIG", str(node.config))
    Store.open(node.url, 5.0).close()
    for name in ("node001", "node002"):
        outbox_files.write(node.outbox, make_record(node=name), fsync=False)
    holder = sqlite3.connect(node.db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, out, _ = run(capsys, "ingest")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (code, out) == (1, f"{node.outbox}: 0 stored, 0 duplicates, 0 quarantined, 2 kept\n")
    assert len(list(node.outbox.glob("*.json"))) == 2
    assert run(capsys, "ingest")[:2] == (0, f"{node.outbox}: 2 stored, 0 duplicates, 0 quarantined, 0 kept\n")


def test_ingest_from_an_outbox_that_is_not_there_is_an_error(node: Node, capsys) -> None:
    missing = node.root / "not-there"
    assert run(capsys, "ingest", "--outbox", str(missing)) == (
        1,
        "",
        f"jobcarbon: outbox {missing} is not a directory (--outbox, or paths.outbox in the config)\n",
    )


def test_db_upgrade_names_a_missing_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    node = Node(tmp_path, f"sqlite:///{tmp_path}/gone/x.db")
    monkeypatch.setenv("JOBCARBON_CONFIG", str(node.config))
    assert run(capsys, "db", "upgrade") == (
        1,
        "",
        f"jobcarbon: database: cannot create {tmp_path}/gone/x.db: "
        f"directory {tmp_path}/gone does not exist\n",
    )


@pytest.mark.parametrize("where", ["no database file", "missing directory"])
def test_ingest_keeps_records_when_there_is_no_database(
    tmp_path: Path, monkeypatch, capsys, where: str
) -> None:
    url = (
        f"sqlite:///{tmp_path}/jobcarbon.db"
        if where == "no database file"
        else f"sqlite:///{tmp_path}/gone/x.db"
    )
    node = Node(tmp_path, url)
    monkeypatch.setenv("JOBCARBON_CONFIG", str(node.config))
    written = outbox_files.write(node.outbox, make_record(), fsync=False)
    code, out, err = run(capsys, "ingest")
    assert (code, out) == (1, "")
    assert err.startswith("jobcarbon: database: ")
    assert err.count("\n") == 1
    assert written.exists()
    assert not (tmp_path / "jobcarbon.db").exists()  # ingest never creates the database


# --- intensity ---------------------------------------------------------------------------------


def test_intensity_show_prints_the_zones_series_as_a_table(store: Store, capsys) -> None:
    store.upsert_intensity([de_point((0, 60), 200.25), de_point((60, 120), 300, forecast=True)])
    store.upsert_intensity([IntensityPoint("FR", T0, T0 + dt.timedelta(hours=1), 31, "em", "lifecycle")])
    code, out, err = run(
        capsys,
        "intensity",
        "show",
        "--zone",
        "DE",
        "--start",
        "2026-03-02T09:00Z",
        "--end",
        "2026-03-02T12:00",
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["start", "(UTC)", "end", "(UTC)", "gCO2e/kWh", "source", "scope", "flags"]
    assert lines[2].split() == [
        "2026-03-02T10:00Z",
        "2026-03-02T11:00Z",
        "200.2",
        "electricitymaps",
        "lifecycle",
        "-",
    ]
    assert lines[3].split() == [
        "2026-03-02T11:00Z",
        "2026-03-02T12:00Z",
        "300.0",
        "electricitymaps",
        "lifecycle",
        "forecast",
    ]
    assert len(lines) == 4


def test_intensity_show_json(store: Store, capsys) -> None:
    store.upsert_intensity([de_point((0, 60), 200.25)])
    code, out, _ = run(
        capsys, "intensity", "show", "--zone", "DE", "--start", "2026-03-02", "--end", "2026-03-03", "--json"
    )
    assert code == 0
    assert json.loads(out) == {
        "schema": "jobcarbon/intensity/1",
        "zone": "DE",
        "start": "2026-03-02T00:00Z",
        "end": "2026-03-03T00:00Z",
        "points": [
            {
                "zone": "DE",
                "start": "2026-03-02T10:00Z",
                "end": "2026-03-02T11:00Z",
                "g_per_kwh": 200.25,
                "source": "electricitymaps",
                "scope": "lifecycle",
                "estimated": False,
                "forecast": False,
                "fetched_at": None,
            }
        ],
    }


def test_intensity_show_csv(store: Store, capsys) -> None:
    store.upsert_intensity([de_point((0, 60), 200.25), de_point((60, 120), 300, forecast=True)])
    code, out, _ = run(
        capsys,
        "intensity",
        "show",
        "--zone",
        "DE",
        "--start",
        "2026-03-02",
        "--end",
        "2026-03-03",
        "--format",
        "csv",
    )
    assert (code, out.splitlines()) == (
        0,
        [
            "start,end,g_per_kwh,source,scope,forecast,estimated",
            "2026-03-02T10:00Z,2026-03-02T11:00Z,200.25,electricitymaps,lifecycle,False,False",
            "2026-03-02T11:00Z,2026-03-02T12:00Z,300.0,electricitymaps,lifecycle,True,False",
        ],
    )


def test_intensity_show_outside_the_data_is_one_line_and_exit_1(store: Store, capsys) -> None:
    store.upsert_intensity([de_point((0, 60), 200)])
    code, out, err = run(
        capsys, "intensity", "show", "--zone", "DE", "--start", "2026-03-01", "--end", "2026-03-02"
    )
    assert (code, out) == (1, "")
    assert (
        err == "jobcarbon: no intensity stored for zone DE between 2026-03-01T00:00Z and 2026-03-02T00:00Z\n"
    )
    code, out, _ = run(
        capsys, "intensity", "show", "--zone", "DE", "--start", "2026-03-01", "--end", "2026-03-02", "--json"
    )
    assert (code, json.loads(out)["points"]) == (0, [])


def test_intensity_show_refuses_a_bad_start(node: Node, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main.main(["intensity", "show", "--zone", "DE", "--start", "last tuesday"])
    assert exit_info.value.code == 2
    assert "'last tuesday' is not an ISO date or date-time" in capsys.readouterr().err


def test_intensity_sync_without_providers_says_so(node: Node, store: Store, capsys) -> None:
    assert run(capsys, "intensity", "sync") == (
        1,
        "",
        "jobcarbon: no intensity providers configured (intensity.providers)\n",
    )


# --- recompute ---------------------------------------------------------------------------------


def test_recompute_since_updates_only_later_parts(node: Node, store: Store, capsys) -> None:
    settings = Accounting(zone="DE", pue=1.2)
    day = 86400.0
    early, late = (
        store.add_part(document, account=join.accountant(store, settings))
        for document in (make_record(job_id=1, start=START), make_record(job_id=2, start=START + 2 * day))
    )
    series_start = dt.datetime.fromtimestamp(START, dt.UTC)
    store.upsert_intensity(
        [
            IntensityPoint(
                "DE",
                series_start + dt.timedelta(days=d),
                series_start + dt.timedelta(days=d, hours=1),
                100,
                "em",
                "lifecycle",
            )
            for d in (0, 2)
        ]
    )
    before = store.footprint(late)
    code, out, err = run(capsys, "recompute", "--since", "2026-01-02")
    assert (code, err) == (0, "")
    summary, header, _rule, *lines = out.splitlines()
    assert summary == "1 parts checked, 1 footprints updated (previous versions kept)"
    assert header.split()[:4] == ["month", "cluster", "account", "footprints"]
    (line,) = lines  # only the late part's month and account moved
    month, cluster, account, footprints, kg_before, kg_after, change, kwh_before, kwh_after = line.split()
    assert (month, cluster, footprints) == ("2026-01", "hpc", "1")
    assert account == store.part(late)["account"]
    assert float(kg_before) == pytest.approx(before["co2e_g"] / 1000, abs=1e-6)
    assert store.footprint(early)["version"] == 1
    updated = store.footprint(late)
    assert (updated["version"], updated["rung"]) == (2, "measured_series")
    assert updated["co2e_g"] == pytest.approx(updated["it_energy_j"] * 1.2 / 3.6e6 * 100)
    assert float(kg_after) == pytest.approx(updated["co2e_g"] / 1000, abs=1e-6)
    assert change == f"{(updated['co2e_g'] - before['co2e_g']) / before['co2e_g'] * 100:+.2f}%"
    assert (
        float(kwh_before) == float(kwh_after) == pytest.approx(updated["facility_energy_j"] / 3.6e6, abs=1e-6)
    )
    assert run(capsys, "recompute")[1].startswith(
        "2 parts checked, 1 footprints updated (previous versions kept)\n"
    )
    assert run(capsys, "recompute")[1] == "2 parts checked, 0 footprints updated (previous versions kept)\n"


# --- rollup ------------------------------------------------------------------------------------


def test_rollup_rebuilds_the_months_changed_since_and_only_those(node: Node, store: Store, capsys) -> None:
    store.add_part(make_record(job_id=1, start=START), account=join.accountant(store, Accounting(zone="DE")))
    code, out, err = run(capsys, "rollup")
    assert (code, err) == (0, "")
    (line,) = out.splitlines()
    assert line.startswith("2026-01: ")
    assert run(capsys, "rollup") == (0, "", "")  # nothing changed since
