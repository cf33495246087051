"""`jobcarbon-mail`, slurmctld's MailProg: the summary appended, Slurm's mail always handed over, no shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slurm_plugin.cli import mailprog
from tests import jobdb

ENDED = "Slurm Job_id=327 Name=train Ended, Run time 00:05:01, COMPLETED, ExitCode 0"


@pytest.fixture
def fake_mail(tmp_path: Path) -> Path:
    """A mail program that writes down its arguments and its body, as /bin/mail would send them."""
    program = tmp_path / "mail"
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(tmp_path / 'sent.json')!r}, 'w').write(json.dumps([sys.argv[1:], sys.stdin.read()]))\n"
    )
    program.chmod(0o755)
    return program


def config_file(tmp_path: Path, program: Path, url: str = "sqlite:///unused.db", wait_s: float = 0) -> Path:
    path = tmp_path / "jobcarbon.yaml"
    path.write_text(f"database:\n  url: {url}\nmail:\n  program: {program}\n  wait_s: {wait_s}\n")
    return path


def sent(tmp_path: Path) -> tuple[list[str], str]:
    argv, body = json.loads((tmp_path / "sent.json").read_text())
    return argv, body


def env(config: Path, **slurm: str) -> dict[str, str]:
    return {"JOBCARBON_CONFIG": str(config), **slurm}


def test_an_ended_jobs_mail_carries_its_summary(tmp_path: Path, fake_mail: Path) -> None:
    asked: list[int] = []

    def summary(job: int) -> tuple[bool, str]:
        asked.append(job)
        return True, "job 327 on cluster hpc: COMPLETED (exit code 0)\n  energy ..."

    slurm = env(config_file(tmp_path, fake_mail), SLURM_JOB_ID="327", SLURM_JOB_MAIL_TYPE="Ended")
    code = mailprog.main(["-s", ENDED, "alice@example.org"], slurm, summary)
    assert (code, asked) == (0, [327])
    assert sent(tmp_path) == (
        ["-s", ENDED, "alice@example.org"],
        "job 327 on cluster hpc: COMPLETED (exit code 0)\n  energy ...\n",
    )


def test_a_job_name_with_shell_syntax_reaches_mail_as_one_argument(tmp_path: Path, fake_mail: Path) -> None:
    marker = tmp_path / "pwned"
    name = f"$(touch {marker});`touch {marker}`"
    subject = f"Slurm Job_id=328 Name={name} Failed, Run time 00:00:01, FAILED, ExitCode 3"
    code = mailprog.main(
        ["-s", subject, "alice"], env(config_file(tmp_path, fake_mail)), lambda job: (True, f"job {job}")
    )
    assert code == 0
    assert sent(tmp_path) == (["-s", subject, "alice"], "job 328\n")
    assert not marker.exists()


def test_mail_that_is_not_about_an_end_goes_out_as_it_came(tmp_path: Path, fake_mail: Path) -> None:
    began = "Slurm Job_id=329 Name=train Began, Queued time 00:00:01"
    slurm = env(config_file(tmp_path, fake_mail), SLURM_JOB_ID="329", SLURM_JOB_MAIL_TYPE="Began")
    assert mailprog.main(["-s", began, "alice"], slurm, lambda job: pytest.fail("asked")) == 0
    assert sent(tmp_path) == (["-s", began, "alice"], "")


def test_a_record_not_delivered_yet_is_said_so(tmp_path: Path, fake_mail: Path) -> None:
    slurm = env(config_file(tmp_path, fake_mail), SLURM_JOB_ID="327")
    missing = (False, "jobcarbon: no job 327 in the jobcarbon database")
    assert mailprog.main(["-s", ENDED, "alice"], slurm, lambda job: missing) == 0
    _, body = sent(tmp_path)
    assert body.startswith("jobcarbon: the energy and carbon summary of job 327 is not yet available")
    assert "no job 327 in the jobcarbon database" in body


def test_it_waits_briefly_for_the_record() -> None:
    now = [0.0]
    answers = iter([(False, "not yet"), (False, "not yet"), (True, "job 327 ...")])
    body = mailprog.body(
        327, lambda job: next(answers), 10.0, lambda: now[0], lambda s: now.__setitem__(0, now[0] + s)
    )
    assert (body, now[0]) == ("job 327 ...\n", 4.0)
    now[0] = 0.0
    late = mailprog.body(
        327, lambda job: (False, "no job"), 3.0, lambda: now[0], lambda s: now.__setitem__(0, now[0] + s)
    )
    assert "not yet available (no job)" in late
    assert now[0] == 2.0  # one more look fitted in the 3 s, the next would not


def test_a_configuration_that_does_not_load_still_lets_the_mail_out(
    tmp_path: Path, fake_mail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mail: [\n")
    program, wait_s, problem = mailprog._settings({"JOBCARBON_CONFIG": str(bad)})
    assert (program, wait_s) == (Path("/bin/mail"), 0.0)  # Slurm's own default MailProg
    assert problem is not None
    assert problem.startswith(f"no summary: {bad}")
    monkeypatch.setattr(mailprog, "_settings", lambda env: (fake_mail, 0.0, problem))
    assert mailprog.main(["-s", ENDED, "alice"], {"JOBCARBON_CONFIG": str(bad)}) == 0
    assert sent(tmp_path) == (["-s", ENDED, "alice"], f"jobcarbon: {problem}\n")


def test_recipients_that_look_like_options_are_refused(tmp_path: Path, fake_mail: Path) -> None:
    slurm = env(config_file(tmp_path, fake_mail))
    assert mailprog.main(["-s", ENDED, "-Xevil"], slurm, lambda job: (True, "")) == 2
    assert mailprog.main(["-s", ENDED], slurm, lambda job: (True, "")) == 2
    assert not (tmp_path / "sent.json").exists()


def test_mail_escapes_in_the_summary_are_defused() -> None:
    body = mailprog.body(1, lambda job: (True, "job 1\n~! rm -rf /\nend"), 0.0)
    assert body == "job 1\n ~! rm -rf /\nend\n"


@pytest.mark.parametrize(
    ("subject", "slurm", "job"),
    [
        (ENDED, {}, 327),
        (ENDED, {"SLURM_JOB_ID": "327; rm -rf /"}, 327),  # not digits: the subject's id instead
        ("Slurm Array Task Job_id=123_4 (127) Name=t Failed, Run time 00:00:01, FAILED, ExitCode 1", {}, 127),
        (
            "Slurm Array Summary Job_id=123_* (123) Name=t Ended, Run time 00:00:09, COMPLETED, ExitCode 0",
            {"SLURM_JOB_ID": "125", "SLURM_ARRAY_JOB_ID": "123"},
            123,
        ),
        (ENDED, {"SLURM_JOB_MAIL_TYPE": "Reached time limit", "SLURM_JOB_ID": "327"}, 327),
        (ENDED, {"SLURM_JOB_MAIL_TYPE": "Requeued", "SLURM_JOB_ID": "327"}, None),
        ("Slurm Job_id=327 Name=t Began, Queued time 00:00:01", {}, None),
        ("hello Ended, there", {}, None),
        ("Slurm Job_id=99999999999 Name=t Ended, Run time 00:00:01, COMPLETED, ExitCode 0", {}, None),
    ],
)
def test_the_job_id_is_read_strictly(subject: str, slurm: dict[str, str], job: int | None) -> None:
    assert mailprog.job_id(subject, slurm) == job


def test_the_summary_comes_from_the_database(tmp_path: Path, fake_mail: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobcarbon.db'}"
    ids = jobdb.build_scenarios(url)
    config = config_file(tmp_path, fake_mail, url)
    slurm = env(config, SLURM_JOB_ID=str(ids["gpu"]), SLURM_JOB_MAIL_TYPE="Ended")
    assert mailprog.main(["-s", ENDED, "alice"], slurm) == 0
    assert sent(tmp_path)[1].startswith(f"job {ids['gpu']} on cluster hpc:")
    slurm["SLURM_JOB_ID"] = "4242"
    assert mailprog.main(["-s", ENDED, "alice"], slurm) == 0
    assert "summary of job 4242 is not yet available (jobcarbon: no job 4242" in sent(tmp_path)[1]


def test_a_running_snapshot_is_not_the_end_of_job_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    class Done:
        returncode = 0
        stdout = "job 5 on cluster c: running\n\nstill running: figures up to 2026-01-01T00:00:00Z\n"
        stderr = ""

    monkeypatch.setattr(mailprog.subprocess, "run", lambda *a, **k: Done())
    found, why = mailprog.stored_summary(None, 1.0)(5)
    assert (found, why) == (False, "only the running job's figures so far have arrived")
