"""Job ids as users type them: `123`, `123_4` (array task) and `123+1` (heterogeneous component).

Parsing is strict (digits and one separator, bounded length) because the text comes from the command
line and ends up in a `sacct` argument. jobcarbon stores jobs under the raw id slurmd gives the
prolog (SLURM_JOB_ID: for an array task the task's own id, for a heterogeneous component the
component's), so the array and het forms are resolved to that id by `sacct ... -o JobIDRaw`.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass

from slurm_plugin.errors import JobcarbonError

MAX_TEXT = 24  # "4294967295_4294967295" fits; anything longer is not a job id
MAX_ID = 2**32 - 1  # Slurm job ids are uint32_t (slurm.h)
SACCT_TIMEOUT_S = 5.0
_FORM = re.compile(r"(\d+)(?:([_+])(\d+))?")


class JobIdError(JobcarbonError):
    """Not a job id, or its array/het form could not be resolved; the message is one line."""


@dataclass(frozen=True)
class JobSpec:
    """A job as typed: the job id, and the array task or het component when given."""

    text: str
    job_id: int
    separator: str | None = None  # "_" array task, "+" heterogeneous component
    index: int | None = None

    @property
    def is_raw(self) -> bool:
        return self.separator is None


def parse(text: str) -> JobSpec:
    """A JobSpec, or JobIdError naming (a shortened form of) the text."""
    match = _FORM.fullmatch(text) if len(text) <= MAX_TEXT and text.isascii() else None
    if match is None:
        raise JobIdError(f"{_shown(text)} is not a job id (expected 123, 123_4 or 123+1)")
    job_id, separator, index = match.groups()
    numbers = [int(job_id)] + ([int(index)] if index is not None else [])
    if numbers[0] == 0 or any(n > MAX_ID for n in numbers):
        raise JobIdError(f"{_shown(text)} is not a job id (out of range)")
    return JobSpec(text, numbers[0], separator, numbers[1] if index is not None else None)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")


# sacct's names of the states before a job starts and while it runs (slurm.h, job_state_string()).
WAITING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
ACTIVE = frozenset(
    {"RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
)


@dataclass(frozen=True)
class SlurmJob:
    """What sacct says about a job: its raw id and state (first word: "CANCELLED by 0" → CANCELLED)."""

    raw_id: int
    state: str
    time_limit_s: float | None = None

    @property
    def phase(self) -> str:
        """ "pending", "running" or "ended"."""
        return "pending" if self.state in WAITING else "running" if self.state in ACTIVE else "ended"


def sacct_path() -> str | None:
    """sacct's absolute path, looked up on PATH once: it is then run by that path, never via a shell."""
    found = shutil.which("sacct")
    return os.path.abspath(found) if found else None


def lookup(spec: JobSpec, timeout_s: float = SACCT_TIMEOUT_S) -> SlurmJob | None:
    """The job as Slurm's accounting knows it (run as the caller, so Slurm's own privacy applies)."""
    import subprocess

    sacct = sacct_path()
    if sacct is None:
        raise JobIdError(f"cannot resolve job {spec.text}: sacct is not installed or not on PATH")
    argv = [sacct, "-n", "-X", "-P", "-j", spec.text, "-o", "JobIDRaw,State,TimelimitRaw"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise JobIdError(f"cannot resolve job {spec.text}: sacct did not answer in {timeout_s:g} s") from None
    except OSError as exc:
        raise JobIdError(f"cannot resolve job {spec.text}: cannot run sacct: {exc.strerror}") from None
    if done.returncode != 0:
        problem = (done.stderr.strip().splitlines() or ["failed"])[-1][:200].removeprefix("sacct: ")
        raise JobIdError(f"cannot resolve job {spec.text}: sacct: {problem}")
    return _first(done.stdout, spec)


def _first(output: str, spec: JobSpec) -> SlurmJob | None:
    for line in output.splitlines():
        raw, _, rest = line.strip().partition("|")
        state, _, limit = rest.partition("|")
        if not raw.isdigit() or (spec.is_raw and int(raw) != spec.job_id):
            continue
        minutes = int(limit) if limit.isdigit() else None  # "UNLIMITED", "Partition_Limit": unknown
        return SlurmJob(int(raw), (state.split() or ["UNKNOWN"])[0], minutes * 60.0 if minutes else None)
    return None
