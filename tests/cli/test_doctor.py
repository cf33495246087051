"""`jobcarbon doctor` on a simulated node: one check per source, and a line per mistake an admin can make."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from slurm_plugin import config
from slurm_plugin.cli import doctor, main
from slurm_plugin.sensors import procstat
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

    monkeypatch.setitem(doctor.node.NODE_SENSORS, "rapl", broken)
    checks = by_name(doctor.run(config.load(node_with(tmp_path, "  deliver_from_nodes: false\n").config)))
    assert (checks["rapl"][0].status, checks["rapl"][0].detail) == ("warning", "RuntimeError: a bug")
    assert checks["procfs"][0].status == "ok"
    assert "nvml" in checks


# --- the pre-flight: one line per mistake, through the command ----------------------------------

REPO = Path(__file__).resolve().parents[2]
# What `scontrol show config` prints on a well set-up node (Slurm 22.05's layout, cgroup.conf's part too).
GOOD_SLURM = {
    "SLURM_VERSION": "22.05.8",
    "PrologFlags": "Alloc,Contain",
    "PrologEpilogTimeout": "60",
    "ProctrackType": "proctrack/cgroup",
    "TaskPlugin": "task/affinity,task/cgroup",
    "CgroupPlugin": "cgroup/v1",
    "ConstrainCores": "yes",
}


class Pilot:
    """A simulated node with jobcarbon's hooks installed and a fake `scontrol` first on PATH."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra_config: str = ""):
        self.root = tmp_path
        self.node = SimNode(tmp_path, extra_config=extra_config or "accounting:\n  zone: DE\n")
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        monkeypatch.setenv("PATH", f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        monkeypatch.delenv(config.ENV_VAR, raising=False)
        self.hooks = {name: self._install_hook(name) for name in ("prolog", "epilog")}
        self.slurm = {
            **GOOD_SLURM,
            "SLURM_CONF": str(tmp_path / "slurm.conf"),
            "SlurmdSpoolDir": str(tmp_path / "slurmd"),
            "Prolog": str(tmp_path / "prolog.d" / "*"),
            "Epilog": str(tmp_path / "epilog.d" / "*"),
        }
        self.scontrol()

    def _install_hook(self, name: str) -> Path:
        """The real hook script, its interpreter defaults pointed at this Python and this tree."""
        text = (REPO / name / f"jobcarbon-{name}").read_text()
        text = text.replace("/opt/jobcarbon/bin/python3", sys.executable)
        text = text.replace("${JOBCARBON_PYTHONPATH:=}", "${JOBCARBON_PYTHONPATH:=" + str(REPO) + "}")
        hook = self.root / f"{name}.d" / "50-jobcarbon"
        hook.parent.mkdir()
        hook.write_text(text)
        hook.chmod(0o755)
        return hook

    def scontrol(self, **changes: str | None) -> None:
        """A `scontrol` printing `show config` lines: these settings, `None` leaving one out."""
        self.slurm.update(changes)
        lines = "\n".join(f"{k:<23} = {v}" for k, v in self.slurm.items() if v is not None)
        script = self.bin / "scontrol"
        script.write_text(
            f"#!/bin/sh\ncat <<'END'\nConfiguration data as of 2026-12-05T00:00:00\n{lines}\nEND\n"
        )
        script.chmod(0o755)

    def doctor(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[tuple[str, ...]]]:
        """Exit status and every line of `jobcarbon doctor` as (name, status, detail)."""
        code = main.main(["--config", str(self.node.config), "doctor", *extra])
        out = capsys.readouterr().out
        return code, [tuple(line.split(maxsplit=2)) for line in out.splitlines()]

    def errors(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[tuple[str, ...]]]:
        code, lines = self.doctor(capsys)
        return code, [line for line in lines if line[1] == "error"]


@pytest.fixture
def pilot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pilot:
    return Pilot(tmp_path, monkeypatch)


def test_a_well_set_up_node_has_no_error_and_its_hooks_import_jobcarbon(pilot: Pilot, capsys) -> None:
    code, lines = pilot.doctor(capsys)
    found = {line[0]: line for line in lines}
    assert (code, [line for line in lines if line[1] == "error"]) == (0, [])
    assert found["prolog"] == (
        "prolog",
        "ok",
        f"{pilot.hooks['prolog']} runs {sys.executable}, which imports slurm_plugin",
    )
    assert found["epilog"][1] == "ok"
    assert found["prolog_flags"] == ("prolog_flags", "ok", "PrologFlags=Alloc,Contain")
    assert found["zone"][1:] == (
        "ok",
        "DE: no series configured, Electricity Maps yearly 2025 (ODbL) 342 g/kWh",
    )
    assert found["slurm_cgroup"][1] == "ok"


def test_json_parses_and_lists_every_check(pilot: Pilot, capsys) -> None:
    code, out = main.main(["--config", str(pilot.node.config), "doctor", "--json"]), capsys.readouterr().out
    document = json.loads(out)
    names = [c["name"] for c in document["checks"]]
    assert (code, document["schema"]) == (0, "jobcarbon/doctor/1")
    assert {c["status"] for c in document["checks"]} <= {"ok", "absent", "warning", "error"}
    assert set(names) >= {
        "config", "procfs", "cgroup", "rapl", "nvml", "cpu_power", "spool", "outbox", "ledger", "database",
        "database_files", "secrets", "pue", "timezone", "zone", "slurm", "prolog", "epilog",
        "prolog_flags", "prolog_timeout", "slurm_cgroup",
    }  # fmt: skip
    assert len(doctor.CHECKS) == 17  # a new check is added to this list too


def test_a_pue_below_one_is_an_error_naming_file_and_field(tmp_path: Path, monkeypatch, capsys) -> None:
    pilot = Pilot(tmp_path, monkeypatch, "accounting:\n  zone: DE\n  pue: 0.5\n")
    code, errors = pilot.errors(capsys)
    assert (code, errors) == (
        1,
        [("pue", "error", f"{pilot.node.config}: accounting.pue 0.5 is not a plausible PUE (1 to 3)")],
    )


def test_an_unknown_time_zone_is_an_error_and_report_says_so_in_one_line(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    pilot = Pilot(tmp_path, monkeypatch, "accounting:\n  zone: DE\n  timezone: Mars/Olympus\n")
    line = f"{pilot.node.config}: accounting.timezone 'Mars/Olympus' is not a known time zone"
    assert pilot.errors(capsys) == (1, [("timezone", "error", line)])
    code = main.main(["--config", str(pilot.node.config), "report", "--month", "2026-11"])
    assert (code, capsys.readouterr().err) == (2, f"jobcarbon: {line}\n")


def test_a_zone_no_provider_or_table_knows_is_an_error(tmp_path: Path, monkeypatch, capsys) -> None:
    pilot = Pilot(tmp_path, monkeypatch, "accounting:\n  zone: XX-NOPE\n")
    code, errors = pilot.errors(capsys)
    assert code == 1
    assert [e[:2] for e in errors] == [("zone", "error")]
    assert errors[0][2].startswith(
        f"{pilot.node.config}: accounting.zone 'XX-NOPE' is unknown to the configured"
    )


def test_a_zone_only_a_provider_knows_is_fine(tmp_path: Path, monkeypatch, capsys) -> None:
    extra = "accounting:\n  zone: GB-13\nintensity:\n  providers:\n    - name: gb\n      zone: GB-13\n"
    code, lines = Pilot(tmp_path, monkeypatch, extra).doctor(capsys)
    assert (code, [line for line in lines if line[0] == "zone"]) == (
        0,
        [("zone", "ok", "GB-13: series from gb")],
    )


def test_a_token_file_others_may_read_is_an_error(tmp_path: Path, monkeypatch, capsys) -> None:
    token = tmp_path / "em.token"
    token.write_text("secret\n")
    token.chmod(0o644)
    extra = "accounting:\n  zone: DE\nintensity:\n  providers:\n    - name: electricitymaps\n      zone: DE\n"
    pilot = Pilot(tmp_path, monkeypatch, extra + f"      token_file: {token}\n")
    code, errors = pilot.errors(capsys)
    assert (code, errors) == (
        1,
        [
            (
                "secrets",
                "error",
                f"{pilot.node.config}: intensity.providers[0].token_file: readable by group/others: "
                f"{token} is mode 0644 (chmod go-rwx {token})",
            )
        ],
    )
    token.chmod(0o600)
    assert pilot.errors(capsys) == (0, [])


def test_a_database_every_user_may_read_is_an_error(tmp_path: Path, monkeypatch, capsys) -> None:
    database = tmp_path / "db" / "jobcarbon.db"
    database.parent.mkdir(mode=0o750)
    Store.open(f"sqlite:///{database}", 5.0, create=True).close()
    database.chmod(0o644)
    pilot = Pilot(tmp_path, monkeypatch, f"accounting:\n  zone: DE\ndatabase:\n  url: sqlite:///{database}\n")
    code, errors = pilot.errors(capsys)
    assert (code, errors) == (
        1,
        [
            (
                "database_files",
                "error",
                f"readable by every user while visibility.mode is own: {database} is mode 0644 "
                f"(chmod o-rwx {database})",
            )
        ],
    )
    database.chmod(0o640)
    assert pilot.errors(capsys) == (0, [])


@pytest.mark.parametrize("where", ["mode-0755", "slurmd-spool"])
def test_a_spool_others_may_read_or_slurms_own_is_an_error(pilot: Pilot, capsys, where: str) -> None:
    spool = pilot.node.spool
    spool.mkdir(mode=0o700)
    if where == "mode-0755":
        spool.chmod(0o755)
        problem = f"must be private (0700): {spool} is mode 0755 (chmod go-rwx {spool})"
    else:
        pilot.scontrol(SlurmdSpoolDir=str(spool))
        problem = f"{spool} is within Slurm's SlurmdSpoolDir {spool}: use a directory of its own"
    assert pilot.errors(capsys) == (1, [("spool", "error", f"{pilot.node.config}: paths.spool {problem}")])


def test_a_spool_both_open_and_slurms_gets_a_line_for_each(pilot: Pilot, capsys) -> None:
    pilot.node.spool.mkdir(mode=0o755)
    pilot.scontrol(SlurmdSpoolDir=str(pilot.node.spool))
    code, errors = pilot.errors(capsys)
    assert (code, [e[:2] for e in errors]) == (1, [("spool", "error"), ("spool", "error")])


def test_a_spool_not_owned_by_root_is_an_error(pilot: Pilot, capsys) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the spool away")
    pilot.node.spool.mkdir(mode=0o700)
    os.chown(pilot.node.spool, 65534, 65534)
    code, errors = pilot.errors(capsys)
    assert code == 1
    spool = pilot.node.spool
    owned = f"{spool} is owned by uid 65534; run as that user or fix ownership"
    assert errors == [("spool", "error", f"{pilot.node.config}: paths.spool {owned}")]


@pytest.mark.parametrize("mistake", ["missing", "not-executable", "writable", "unset"])
def test_a_prolog_that_cannot_run_jobcarbon_is_an_error(pilot: Pilot, capsys, mistake: str) -> None:
    hook = pilot.hooks["prolog"]
    if mistake == "missing":
        hook.unlink()
        pilot.scontrol(Prolog=str(hook))
        line = f"Prolog={hook} names no file on this node"
    elif mistake == "not-executable":
        hook.chmod(0o644)
        line = f"{hook} is not executable: slurmd fails the hook and drains the node (chmod 755 it)"
    elif mistake == "writable":
        hook.chmod(0o777)
        line = f"slurmd runs it as root, yet others may change it: {hook} is mode 0777 (chmod go-w {hook})"
    else:
        pilot.scontrol(Prolog=None)
        line = "slurm.conf has no Prolog=: jobcarbon's prolog never runs"
    assert pilot.errors(capsys) == (1, [("prolog", "error", line)])


def test_a_prolog_not_jobcarbons_is_a_warning_as_a_wrapper_may_call_it(pilot: Pilot, capsys) -> None:
    pilot.hooks["prolog"].write_text("#!/bin/sh\nexit 0\n")
    code, lines = pilot.doctor(capsys)
    line = f"jobcarbon's prolog is not among Prolog={pilot.slurm['Prolog']} (fine if one of them calls it)"
    assert code == 0
    assert ("prolog", "warning", line) in lines


def test_a_hook_whose_python_lacks_jobcarbon_is_an_error(pilot: Pilot, capsys) -> None:
    python = pilot.root / "python3"  # a Python without the package, as a venv that lost it
    python.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'slurm_plugin'\" >&2\nexit 1\n")
    python.chmod(0o755)
    hook = pilot.hooks["epilog"]
    hook.write_text(hook.read_text().replace(sys.executable, str(python)))
    assert pilot.errors(capsys) == (
        1,
        [
            (
                "epilog",
                "error",
                f"{hook}: JOBCARBON_PYTHON {python} cannot import slurm_plugin: "
                "ModuleNotFoundError: No module named 'slurm_plugin'",
            )
        ],
    )


def test_prolog_flags_run_in_job_is_an_error_saying_to_drop_it(pilot: Pilot, capsys) -> None:
    pilot.scontrol(PrologFlags="Alloc,Contain,RunInJob")
    code, errors = pilot.errors(capsys)
    assert code == 1
    assert [e[:2] for e in errors] == [("prolog_flags", "error")]
    assert "drop RunInJob" in errors[0][2]


def test_constrain_cores_off_and_no_timeout_are_warnings(pilot: Pilot, capsys) -> None:
    pilot.scontrol(ConstrainCores="no", PrologEpilogTimeout="65534")
    code, lines = pilot.doctor(capsys)
    warned = {line[0]: line[2] for line in lines if line[1] == "warning"}
    assert code == 0
    assert "takes the job's CPUs from Slurm's allocation, not the cpuset" in warned["slurm_cgroup"]
    assert warned["prolog_timeout"].startswith("no PrologEpilogTimeout")


def test_cgroup_conf_is_read_when_scontrol_does_not_print_it(pilot: Pilot, capsys) -> None:
    (pilot.root / "slurm.conf").write_text("")
    (pilot.root / "cgroup.conf").write_text("CgroupPlugin=cgroup/v2  # here\nConstrainCores=no\n")
    pilot.scontrol(ConstrainCores=None, CgroupPlugin=None)
    code, lines = pilot.doctor(capsys)
    (cgroup,) = [line for line in lines if line[0] == "slurm_cgroup"]
    assert (code, cgroup[1]) == (0, "warning")
    assert cgroup[2].startswith("CgroupPlugin=cgroup/v2, ConstrainCores=no: ")


def test_without_scontrol_slurm_is_one_warning_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    pilot = Pilot(tmp_path, monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, lines = pilot.doctor(capsys)
    slurm_lines = [line for line in lines if line[0] in ("slurm", "prolog", "epilog", "prolog_flags")]
    assert (code, slurm_lines) == (
        0,
        [("slurm", "warning", "scontrol not found on PATH: hooks and slurm.conf not checked")],
    )


def test_a_hung_scontrol_is_given_up_after_its_timeout(pilot: Pilot, capsys, monkeypatch) -> None:
    (pilot.bin / "scontrol").write_text("#!/bin/sh\nexec sleep 30\n")
    monkeypatch.setattr(doctor.slurm, "SCONTROL_TIMEOUT_S", 0.2)
    code, lines = pilot.doctor(capsys)
    assert code == 0
    assert [line for line in lines if line[0] == "slurm"] == [
        ("slurm", "warning", f"{pilot.bin / 'scontrol'} show config did not answer in 0.2 s: hooks and "
         "slurm.conf not checked"),
    ]  # fmt: skip


def test_without_rapl_the_assumed_tdp_and_idle_power_are_a_warning_naming_the_keys(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    pilot = Pilot(tmp_path, monkeypatch)
    shutil.rmtree(pilot.node.sysfs / "class" / "powercap")
    settings = config.load(pilot.node.config)
    ncpus = procstat.read_ncpus(settings.paths.procfs)
    tdp = 4 * ncpus  # the sampler's per-CPU fallback; the configured idle 20 W is capped at it
    (check,) = doctor.node.check_cpu_power(doctor.Site(settings))
    assert check == doctor.Check(
        "cpu_power",
        "warning",
        f"no RAPL: CPU energy will be estimated (flagged) from TDP {tdp:g} W (4 W x {ncpus} CPUs; "
        f"set cpu.tdp_w), idle {min(20, tdp):g} W (cpu.idle_power_w)",
    )
    (with_rapl,) = doctor.node.check_cpu_power(doctor.Site(config.load(SimNode(tmp_path / "r").config)))
    assert with_rapl.status == "ok"
    assert with_rapl.detail == (
        "RAPL measures; the static share uses TDP 100 W (RAPL's power limit), idle 20 W (cpu.idle_power_w)"
    )


def test_the_ledger_check_says_where_the_node_ledger_stands(tmp_path: Path) -> None:
    node = node_with(tmp_path, f"  url: sqlite:///{tmp_path / 'absent.db'}\n")
    (check,) = by_name(doctor.run(config.load(node.config)))["ledger"]
    assert (check.status, check.detail.split(";")[0]) == ("ok", "no node record yet")
    node.spool.mkdir(mode=0o700, exist_ok=True)
    (node.spool / "ledger.json").write_text('{"t1_s": 1767225600.0, "boot_id": null}')
    (check,) = by_name(doctor.run(config.load(node.config)))["ledger"]
    assert check.detail.startswith("its last node record ends 2026-01-01T00:00:00Z; 0 waiting in the outbox")
