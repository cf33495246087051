"""Job ids as typed: strict parsing, and array/het forms resolved through sacct (a stand-in here)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from slurm_plugin.query.slurm_ids import JobIdError, JobSpec, SlurmJob, lookup, parse


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("4242", JobSpec("4242", 4242)),
        ("4242_7", JobSpec("4242_7", 4242, "_", 7)),
        ("4242+1", JobSpec("4242+1", 4242, "+", 1)),
        ("4294967295", JobSpec("4294967295", 4294967295)),
    ],
)
def test_valid_forms(text: str, spec: JobSpec) -> None:
    assert parse(text) == spec


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "-1",
        "1;id",
        "0",
        "",
        " 42",
        "42 ",
        "4_",
        "_4",
        "4+1+2",
        "4_1_2",
        "٤٢",
        "4294967296",
        "9" * 5000,
        "1\n2",
    ],
)
def test_anything_else_is_refused_in_one_short_line(text: str) -> None:
    with pytest.raises(JobIdError) as refused:
        parse(text)
    message = str(refused.value)
    assert "\n" not in message
    assert len(message) < 120


def fake_sacct(directory: Path, output: str, status: int = 0) -> Path:
    """A `sacct` that records its arguments and prints `output`."""
    directory.mkdir(exist_ok=True)
    script = directory / "sacct"
    script.write_text(
        f'#!/bin/sh\nprintf "%s " "$@" > "{directory}/args"\nprintf "%s" \'{output}\'\nexit {status}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory


def test_an_array_task_resolves_to_its_raw_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_sacct(tmp_path / "bin", "4250|COMPLETED|60\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert lookup(parse("4242_7")) == SlurmJob(4250, "COMPLETED", time_limit_s=3600.0)
    assert (bin_dir / "args").read_text().split() == [
        "-n",
        "-X",
        "-P",
        "-j",
        "4242_7",
        "-o",
        "JobIDRaw,State,TimelimitRaw",
    ]


def test_a_raw_id_only_matches_its_own_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake_sacct(tmp_path / "bin", "4243|RUNNING\n4242|CANCELLED by 0\n")))
    assert lookup(parse("4242")) == SlurmJob(4242, "CANCELLED")


def test_unknown_to_slurm_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake_sacct(tmp_path / "bin", "")))
    assert lookup(parse("4242+1")) is None


def test_missing_sacct_is_said_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JobIdError, match="sacct is not installed"):
        lookup(parse("4242_1"))


def test_a_failing_sacct_is_reported_with_its_last_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake_sacct(tmp_path / "bin", "", status=1)))
    with pytest.raises(JobIdError, match="sacct"):
        lookup(parse("4242_1"))


def test_a_hanging_sacct_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text("#!/bin/sh\nexec sleep 60\n")
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with pytest.raises(JobIdError, match="did not answer"):
        lookup(parse("4242_1"), timeout_s=0.2)


@pytest.mark.parametrize(
    ("state", "phase"),
    [("PENDING", "pending"), ("REQUEUE_HOLD", "pending"), ("RUNNING", "running"), ("COMPLETING", "running"),
     ("COMPLETED", "ended"), ("CANCELLED", "ended"), ("OUT_OF_MEMORY", "ended")],
)  # fmt: skip
def test_phase_of_a_slurm_state(state: str, phase: str) -> None:
    assert SlurmJob(1, state).phase == phase
