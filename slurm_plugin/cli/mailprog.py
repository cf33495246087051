"""`jobcarbon-mail`: slurmctld's MailProg that appends the job's jobcarbon summary to end-of-job mail.

slurmctld runs MailProg as `MailProg -s SUBJECT RECIPIENT` with an empty body and the job in its
environment (`SLURM_JOB_ID`, `SLURM_JOB_MAIL_TYPE`; src/slurmctld/agent.c `_mail_proc`). For a job that
ended or failed this adds `jobcarbon <id>`'s text as the body, waiting up to `mail.wait_s` for the
record to reach the database, then hands the mail to the real program (`mail.program`), as Princeton's
jobstats_mail.sh does with jobstats. Slurm's mail goes out whatever happens to jobcarbon: any failure
of ours becomes a line in the body. No shell is involved: the subject, which holds the job's name, and
the recipients are passed as arguments, and the job id is taken only from digits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from slurm_plugin.defaults import CONFIG_ENV
from slurm_plugin.errors import JobcarbonError

END_TYPES = frozenset({"Ended", "Failed", "Reached time limit"})  # SLURM_JOB_MAIL_TYPE of a job that ended
# "Slurm Job_id=327 Name=x Ended, ...", "Slurm Array Task Job_id=123_4 (127) Name=x Failed, ...",
# "Slurm Array Summary Job_id=123_* (123) Name=x Ended, ..." (src/slurmctld/agent.c `_mail_type_str`)
SUBJECT = re.compile(
    r"^Slurm (?:Array (?:Task|Summary) )?Job_id=([0-9]{1,10})(?:_(?:[0-9]{1,10}|\*) \(([0-9]{1,10})\))? "
)
SUBJECT_ENDED = re.compile(r" (?:Ended|Failed), ")
JOB_ID = re.compile(r"^[0-9]{1,10}$")
RETRY_S = 2.0  # between looks for the record while waiting
RUNNING = "\nstill running: figures up to "  # how `jobcarbon <id>` ends a running job's summary (so far)

Summary = Callable[[int], tuple[bool, str]]  # job id -> (found, text)


def job_id(subject: str, env: Mapping[str, str]) -> int | None:
    """The ended job's id, or None for mail that is not about a job's end (began, requeued, ...)."""
    kind = env.get("SLURM_JOB_MAIL_TYPE")
    if kind is not None and kind not in END_TYPES:
        return None
    if kind is None and not SUBJECT_ENDED.search(subject):
        return None
    array = env.get("SLURM_ARRAY_JOB_ID", "")
    if "Array Summary" in subject and JOB_ID.match(array):
        return int(array)  # the whole array: `jobcarbon <array id>` summarises its tasks
    raw = env.get("SLURM_JOB_ID", "")
    if JOB_ID.match(raw):
        return int(raw)
    found = SUBJECT.match(subject)
    return int(found.group(2) or found.group(1)) if found else None  # the raw id in brackets, if given


def stored_summary(config: str | None, timeout_s: float) -> Summary:
    """`jobcarbon <id>` run as a process of its own (its own error boundary and time limit)."""

    def ask(job: int) -> tuple[bool, str]:
        argv = [
            sys.executable,
            "-m",
            "slurm_plugin",
            *(["--config", config] if config else []),
            "show",
            str(job),
        ]
        try:
            done = subprocess.run(  # a fixed argv: our interpreter, a digits-only id
                argv, capture_output=True, text=True, timeout=max(timeout_s, 10.0), check=False
            )
        except subprocess.TimeoutExpired:
            return False, "jobcarbon did not answer in time"
        if done.returncode != 0:
            return False, done.stderr.strip()
        if RUNNING in done.stdout:  # the node's last snapshot: the final record is still on its way
            return False, "only the running job's figures so far have arrived"
        return True, done.stdout.strip()

    return ask


def body(
    job: int | None,
    summary: Summary,
    wait_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The mail's body: the job's summary, or one line saying why there is none yet."""
    if job is None:
        return ""
    deadline = clock() + wait_s
    while True:
        found, text = summary(job)
        if found:
            return _no_escapes(text) + "\n"
        if clock() + RETRY_S > deadline:
            break
        sleep(RETRY_S)
    why = _no_escapes(text.splitlines()[-1]) if text else "no answer"
    return (
        f"jobcarbon: the energy and carbon summary of job {job} is not yet available ({why});\n"
        f"run `jobcarbon {job}` in a few minutes.\n"
    )


def _no_escapes(text: str) -> str:
    """mail(1) reads a line starting with "~" as a command where it takes escapes: never start one so."""
    return "\n".join(" " + line if line.startswith("~") else line for line in text.splitlines())


def main(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, summary: Summary | None = None
) -> int:
    """Entry point of `jobcarbon-mail -s SUBJECT RECIPIENT...`; exits with the real program's status."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    program, wait_s, problem = _settings(env)
    if len(args) < 3 or args[0] != "-s" or any(r.startswith("-") for r in args[2:]):
        print(f"jobcarbon-mail: expected -s SUBJECT RECIPIENT..., got {len(args)} arguments", file=sys.stderr)
        return 2
    subject, recipients = args[1], args[2:]
    text = f"jobcarbon: {problem}\n" if problem else ""
    if not problem:
        ask = summary or stored_summary(env.get(CONFIG_ENV), wait_s)
        text = body(job_id(subject, env), ask, wait_s)
    try:
        done = subprocess.run(  # argv, no shell: the subject holds the job's name
            [str(program), "-s", subject, *recipients], input=text, text=True, check=False
        )
    except OSError as exc:
        print(f"jobcarbon-mail: cannot run {program}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return done.returncode


def _settings(env: Mapping[str, str]) -> tuple[Path, float, str | None]:
    """mail.program and mail.wait_s; a configuration that does not load still lets the mail out."""
    from slurm_plugin import config

    try:
        settings = config.load(env.get(config.ENV_VAR))
    except JobcarbonError as exc:
        return config.Mail().program, 0.0, f"no summary: {exc}"
    return settings.mail.program, settings.mail.wait_s, None
