"""The node spool: one private directory per running job, shared by the prolog, agent and epilog.

`<spool>/jobs/<jobid>.<restart>/` holds `job.json` (written by the prolog), `journal.jsonl` (the
sampler's samples), `stop` (the epilog's end time) and `lock` (held by whoever samples or finalises
the job). The directory is the job's state: whoever finds it can resume or finalise the job, so a
dead agent or a missed socket message loses samples at most, never the job.

`<spool>/incoming/<jobid>.<restart>.json` is a prolog's message left by the fast path when no agent
was listening (fastpath.py); the agent it started, or the job's epilog if that comes first, turns it
into the job's directory under `incoming.lock`, so exactly one of them does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from slurm_plugin import runs
from slurm_plugin.node.fastpath import INCOMING, boot_id
from slurm_plugin.node.jobenv import JobEnvError, JobInfo, from_env, run_of
from slurm_plugin.safefile import atomic_write, ensure_dir, lock_file, read_nofollow

KEY = re.compile(r"[0-9]{1,10}\.[0-9]{1,10}")
INCOMING_NAME = re.compile(r"([0-9]{1,10}\.[0-9]{1,10})\.json")
# An epilog with a restart count but no run here: slurmd skips the prolog of a job id whose credential
# it still holds, as for a requeued job started again on the node within minutes (seen on 22.05).
NO_PROLOG_AFTER_REQUEUE = "no run of this requeued job started here (Slurm ran no prolog for it): no record"
ADOPT_WAIT_S = 2.0  # another process is adopting: it takes milliseconds
# A prolog waits this long for an ended job of the same id and restart (Slurm reused the id) to leave
# the spool: the agent writes its record within a tick or two of its epilog.
ANOTHER_JOB_WAIT_S = 10.0
STALE_TEMPORARY_S = 600.0  # a prolog writes its message in milliseconds: an older temporary's writer died


class AnotherJobHere(JobEnvError):
    """The spool still holds another job with this job's id and restart count (Slurm reused the id)."""


class Spool:
    def __init__(self, root: Path, fsync: bool = True):
        self.root = root
        self.fsync = fsync
        self.jobs = root / "jobs"
        self.socket = root / "agent.sock"
        self.agent_lock = root / "agent.lock"
        self.incoming = root / INCOMING

    def prepare(self) -> None:
        ensure_dir(self.root)
        ensure_dir(self.jobs)
        ensure_dir(self.incoming)

    def adopt_incoming(self, cluster: str, node: str, job_id: int | None = None) -> list[str]:
        """Turn the prolog messages in incoming/ (all, or only those of `job_id`'s runs) into job
        directories; return one problem per message refused (moved aside as incoming/failed-*)."""
        names = self._incoming_names(job_id)
        if not names:
            return []
        lock = lock_file(self.root / "incoming.lock", ADOPT_WAIT_S)
        if lock is None:
            return [f"{self.incoming}: another process holds incoming.lock; left for it"]
        try:
            return [problem for name in names if (problem := self._adopt(name, cluster, node))]
        finally:
            os.close(lock)

    def _incoming_names(self, job_id: int | None) -> list[str]:
        try:
            entries = list(os.scandir(self.incoming))
        except FileNotFoundError:
            return []
        if job_id is None:
            _sweep_temporaries(entries)
        names = (match for entry in entries if (match := INCOMING_NAME.fullmatch(entry.name)))
        return sorted(m.group(0) for m in names if job_id is None or job_id_of(m.group(1)) == job_id)

    def _adopt(self, name: str, cluster: str, node: str) -> str | None:
        """One message; None when adopted (or already gone: adopted by someone else)."""
        path = self.incoming / name
        try:
            message = json.loads(read_nofollow(path))
            info = from_env(message["env"], cluster, node)
            if f"{info.key}.json" != name:
                raise JobEnvError(f"the message is for job {info.key}")
            start_s = float(message["time"])
            self.end_runs(info.job_id, start_s, keep=info.key)  # as a prolog served by an agent does
            self.create_job(info, start_s, message.get("boot") or None)
        except FileNotFoundError:
            return None
        except AnotherJobHere as exc:  # adopted once the other job has left the spool
            return f"{path}: left for later: {exc}"
        except (OSError, ValueError, TypeError, KeyError, JobEnvError) as exc:
            path.rename(self.incoming / f"failed-{name}-{int(time.time())}")
            return f"{path}: refused, moved aside: {exc}"
        path.unlink()
        return None

    def job_dir(self, key: str) -> Path:
        if not KEY.fullmatch(key):
            raise ValueError(f"invalid job key {key[:40]!r}")
        return self.jobs / key

    def create_job(self, info: JobInfo, start_s: float, boot: str | None = None) -> Path:
        """Record a starting job (in this boot unless `boot` says otherwise) with its run (`run_of`, fixed
        here once); a repeated prolog for the same run keeps the first start time and run."""
        directory = ensure_dir(self.job_dir(info.key))
        target = directory / "job.json"
        run = run_of(info, start_s)
        if target.exists():
            self._check_same_job(info, run, start_s)
            return directory
        payload = {"job": info._replace(run=run).to_dict(), "start": start_s, "boot_id": boot or boot_id()}
        # No fsync: a power cut that loses this file also killed the job it describes.
        atomic_write(target, json.dumps(payload).encode(), fsync=False)
        return directory

    def _check_same_job(self, info: JobInfo, run: str, start_s: float) -> None:
        """A repeated prolog of the spooled run passes; AnotherJobHere where the directory holds another
        job Slurm gave the same id: one whose epilog came, another user's (whose end is then recorded
        now), or another run Slurm named (`sluid:`, `start:`; a `seen:` run cannot tell)."""
        old, _ = self.load_job(info.key)
        ended = self.stop_time(info.key) is not None
        renamed = old.run != run and not (old.run or runs.SEEN).startswith(runs.SEEN)
        if not (ended or old.uid != info.uid or renamed):
            return
        if not ended:
            self.request_stop(info.key, start_s)
        raise AnotherJobHere(f"another job {info.key} (uid {old.uid}, run {old.run}) is still in the spool")

    def create_job_after(self, info: JobInfo, start_s: float, wait_s: float = ANOTHER_JOB_WAIT_S) -> Path:
        """`create_job`, waiting up to `wait_s` for another job of the same id to be finalised first."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self.create_job(info, start_s)
            except AnotherJobHere:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def job_boot_id(self, key: str) -> str | None:
        """The boot the job started in; None for spool entries written before jobcarbon recorded it."""
        data = json.loads((self.job_dir(key) / "job.json").read_bytes())
        return data.get("boot_id")

    def request_stop(self, key: str, end_s: float, facts: dict[str, Any] | None = None) -> bool:
        """Leave the job's end time, and the epilog's `jobfacts.end_facts`, for whoever finalises it; False
        when no sampler ever ran here."""
        directory = self.job_dir(key)
        if not directory.is_dir():
            return False
        stop = directory / "stop"
        if not stop.exists():
            atomic_write(stop, json.dumps({"end": end_s, **(facts or {})}).encode(), fsync=self.fsync)
        return True

    def runs(self, job_id: int) -> list[str]:
        """The keys of every run of `job_id` with a directory here, whatever restart count each was
        started under: the one place that finds a job's runs by its id (requeue, docs/install.md)."""
        return [key for key in self.job_keys() if job_id_of(key) == job_id]

    def end_runs(
        self, job_id: int, end_s: float, keep: str | None = None, facts: dict[str, Any] | None = None
    ) -> list[str]:
        """Leave `end_s` as the end of every run of `job_id` here but `keep`; return their keys.

        A requeued job's epilog may carry the next run's restart count (Slurm increments it before the
        old run's epilog), so an epilog ends the job's runs by id, and a new run's prolog ends any run
        whose epilog never came.
        """
        ended = [key for key in self.runs(job_id) if key != keep]
        for key in ended:
            self.request_stop(key, end_s, facts)
        return ended

    def job_keys(self) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(self.jobs) if KEY.fullmatch(entry.name))
        except FileNotFoundError:
            return []

    def load_job(self, key: str) -> tuple[JobInfo, float]:
        data = json.loads((self.job_dir(key) / "job.json").read_bytes())
        return JobInfo.from_dict(data["job"]), float(data["start"])

    def stop_time(self, key: str) -> float | None:
        try:
            return float(json.loads((self.job_dir(key) / "stop").read_bytes())["end"])
        except FileNotFoundError:
            return None

    def end_facts(self, key: str) -> dict[str, Any]:
        """What the epilog left beside the end time (`jobfacts.end_facts`); {} from an older epilog."""
        try:
            data = json.loads((self.job_dir(key) / "stop").read_bytes())
        except FileNotFoundError:
            return {}
        return {k: v for k, v in data.items() if k != "end"}

    def lock_job(self, key: str, wait_s: float = 0.0) -> int | None:
        """An exclusive lock on the job directory, or None if another process holds it."""
        return lock_file(self.job_dir(key) / "lock", wait_s)

    def set_aside(self, key: str) -> None:
        """Move a job directory out of the scan (its name no longer matches KEY) without losing it."""
        self.job_dir(key).rename(self.jobs / f"failed-{key}-{int(time.time())}")

    def remove_job(self, key: str) -> None:
        import shutil  # only the epilog and the agent remove jobs: keep it off the prolog's path

        shutil.rmtree(self.job_dir(key), ignore_errors=True)


def job_id_of(key: str) -> int:
    """The Slurm job id of a spool key ("<jobid>.<restart>")."""
    return int(key.partition(".")[0])


def _sweep_temporaries(entries: list[os.DirEntry[str]]) -> None:
    """Remove the dotfile temporaries in incoming/ that prologs killed mid-write left behind."""
    stale = time.time() - STALE_TEMPORARY_S
    for entry in entries:
        if entry.name.startswith("."):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < stale:
                    os.unlink(entry.path)


def finalize(
    spool: Spool,
    key: str,
    end_s: float,
    partial_reasons: list[str],
    outbox: Path,
    slurm: dict[str, Any] | None = None,
) -> Path:
    """Turn a job's journal into its record in the outbox (with Slurm's facts about the job, `slurm`) and
    drop the job's spool directory."""
    return store_record(spool, key, final_record(spool, key, end_s, partial_reasons, slurm), outbox)


def final_record(
    spool: Spool, key: str, end_s: float, partial_reasons: list[str], slurm: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The finished record of a job, built from its journal (or, never sampled, from its job.json), with
    what Slurm said about the job (node/jobfacts.py)."""
    from slurm_plugin import record
    from slurm_plugin.node import journal

    journal_path = spool.job_dir(key) / "journal.jsonl"
    if journal_path.exists():
        samples = journal.read(journal_path)
    else:
        info, start_s = spool.load_job(key)
        samples = journal.Journal({"job": info.to_dict(), "start": start_s})
        partial_reasons = [*partial_reasons, "the sampler never took a sample of this job"]
    return record.build(samples, end_s, partial_reasons, slurm=slurm)


def store_record(spool: Spool, key: str, document: dict[str, Any], outbox: Path) -> Path:
    """Write the job's record into the outbox (replacing its last snapshot), then drop its spool
    directory: a failed write leaves the journal for a retry."""
    from slurm_plugin import outbox as outbox_files

    path = outbox_files.write(outbox, document, fsync=spool.fsync)
    spool.remove_job(key)
    return path
