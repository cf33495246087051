"""The agent's record writing: a finished job's journal closed, Slurm's word on how it ended awaited, its
record built once and written to the outbox; a record the outbox refuses (a full disk) is kept and
retried with a backoff, its journal, closed by its end line, staying in the spool until then so that a
successor agent writes the same record. Running jobs' snapshots go out from here too.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from slurm_plugin import outbox, record
from slurm_plugin.config import Config
from slurm_plugin.eventlog import EventLog
from slurm_plugin.node import jobenv, jobfacts, journal
from slurm_plugin.node.metrics import Exposition
from slurm_plugin.node.sampler import NodeSampler
from slurm_plugin.node.spool import Spool, final_record, store_record
from slurm_plugin.node.tracker import JobTracker

ASK_POLL_S = 0.25  # how often a record waiting for Slurm's answer looks for it
RETRY_FIRST_S = 1.0  # a record the outbox refused is tried again after this, doubling up to RETRY_MAX_S
RETRY_MAX_S = 60.0
LOG_EVERY_S = 60.0  # a record still not written is logged at most this often


class SlurmAnswer(threading.Thread):
    """How a job ended, as scontrol says once the epilogs are done (node/jobfacts.py), asked off the
    sampling loop; `facts` is the record's `slurm` block when the thread has ended."""

    def __init__(self, job: jobenv.JobInfo, exit: dict[str, int] | None, wait_s: float):
        super().__init__(name=f"slurm {job.key}", daemon=True)
        self.job, self.exit, self.wait_s = job, exit, wait_s
        self.facts: dict[str, Any] | None = None

    def run(self) -> None:
        queried = jobfacts.query(self.job, self.wait_s) if self.wait_s > 0 else {}
        self.facts = jobfacts.combine(self.exit, queried, self.job.job_gpus)


@dataclass
class Unwritten:
    """A finished job whose record is not in the outbox yet: its journal's last lines if the disk
    refused them, then its record once built. Kept with the job's lock, so the job is not sampled
    again, and retried until the outbox takes the record."""

    lock: int
    end_s: float
    partial_reasons: list[str]
    lines: list[bytes]  # journal lines (intervals, the end line) still to write
    document: dict[str, Any] | None = None
    asking: SlurmAnswer | None = None  # Slurm's word on how the job ended, being asked for
    tries: int = 0
    next_try: float = 0.0  # time.monotonic()
    logged: float | None = None
    tracker: JobTracker | None = None  # its sampling totals, shown as metrics until the record replaces them


class RecordWriting:
    """The agent's part that turns finished jobs into records; `Agent` holds the state named here."""

    config: Config
    log: EventLog
    spool: Spool
    sampler: NodeSampler
    metrics: Exposition | None
    job_locks: dict[str, int]
    unwritten: dict[str, Unwritten]
    _facts: dict[str, dict[str, Any]]  # running jobs' scontrol facts, by key
    _delivery_due: bool

    def _snapshot(self) -> None:
        """Publish every running job's figures so far (`jobcarbon <jobid>` on a running job)."""
        now = time.time()
        for key, tracker in list(self.sampler.jobs.items()):
            try:
                samples = journal.read(tracker.journal.path)
                slurm = jobfacts.combine(None, self._running_facts(key, tracker.info), tracker.info.job_gpus)
                document = record.build(samples, now, [], running=True, slurm=slurm)
                outbox.write(self.config.paths.outbox, document, fsync=False)
            except Exception as exc:  # a snapshot is a convenience: never stop sampling for it
                self.log("warning", f"job {key}: no running snapshot: {type(exc).__name__}: {exc}")
                continue
            self._delivery_due = True

    def _running_facts(self, key: str, job: jobenv.JobInfo) -> dict[str, Any]:
        """A running job's limits and ids from scontrol, asked once (the projection's time limit)."""
        wait_s = min(self.config.sampler.slurm_query_s, 2.0)
        if key not in self._facts and wait_s > 0:
            self._facts[key] = jobfacts.query(job, wait_s, final=False)
        return self._facts.get(key, {})

    def _finish(self, key: str) -> None:
        """Close the journal of a job whose last tick and GPU readings are done, and write its record.

        Slurm states how the job ended only once its epilogs have ended, after this answered the
        epilog; so, where `sampler.slurm_query_s` allows, a thread asks scontrol meanwhile and the
        record waits for its answer (`_try_write`) while sampling goes on."""
        end_s = self.spool.stop_time(key) or time.time()
        tracker = self.sampler.jobs.get(key)
        lines = self.sampler.remove(key, ended=end_s)
        self._facts.pop(key, None)
        fd = self.job_locks.pop(key, None)
        if fd is not None:
            asking = None
            if tracker is not None:
                asking = SlurmAnswer(
                    tracker.info, self.spool.end_facts(key).get("exit"), self.config.sampler.slurm_query_s
                )
                asking.start()
            self._write_record(key, Unwritten(fd, end_s, [], lines, asking=asking, tracker=tracker))

    def _write_record(self, key: str, entry: Unwritten) -> None:
        """Write the job's record now, or keep it to retry (`_try_write`)."""
        self.unwritten[key] = entry
        self._try_write(key)

    def _retry_records(self) -> None:
        now = time.monotonic()
        for key in [key for key, entry in self.unwritten.items() if entry.next_try <= now]:
            self._try_write(key)

    def _try_write(self, key: str) -> None:
        """Finish the job's journal, build its record once and write it; a refusal of the disk is
        retried with a backoff and logged at most once a minute, and never touches the job's sampling,
        coverage or status. A journal the record cannot be built from is set aside."""
        entry = self.unwritten[key]
        asking = entry.asking is not None and entry.asking.is_alive()
        if asking and self.spool.job_dir(key).is_dir():  # no answer is awaited for a vanished entry
            entry.next_try = time.monotonic() + ASK_POLL_S
            return
        entry.tries += 1
        try:
            self._finish_journal(key, entry)
            if entry.document is None:
                slurm = entry.asking.facts if entry.asking is not None else None
                entry.document = final_record(self.spool, key, entry.end_s, entry.partial_reasons, slurm)
            path = store_record(self.spool, key, entry.document, self.config.paths.outbox)
        except OSError as exc:
            if not self.spool.job_dir(key).is_dir():
                self._drop(
                    key,
                    entry,
                    f"its spool entry is gone (finalised by its epilog, or removed): {exc}",
                )
                return
            now = time.monotonic()
            entry.next_try = now + min(RETRY_FIRST_S * 2 ** (entry.tries - 1), RETRY_MAX_S)
            if entry.logged is None or now - entry.logged >= LOG_EVERY_S:
                entry.logged = now
                self.log(
                    "error",
                    f"job {key}: record not written yet, kept and retried (try {entry.tries}): "
                    f"{type(exc).__name__}: {exc}",
                )
            return
        except Exception as exc:  # a broken journal or job.json: retrying would not mend it
            self._drop(key, entry, f"cannot build its record: {type(exc).__name__}: {exc}")
            with contextlib.suppress(OSError):
                self.spool.set_aside(key)
            return
        del self.unwritten[key]
        os.close(entry.lock)
        if entry.tracker is not None and self.metrics is not None:
            self.metrics.ended(entry.tracker, entry.document["energy"], time.time())
        after = f" after {entry.tries} tries" if entry.tries > 1 else ""
        self.log("info", f"job {key}: record written to {path}{after}")
        self._delivery_due = True

    def _drop(self, key: str, entry: Unwritten, why: str) -> None:
        """Give up a record that retrying cannot write, so the agent is free to leave after its jobs."""
        del self.unwritten[key]
        os.close(entry.lock)
        self.log("error", f"job {key}: {why}")

    def _finish_journal(self, key: str, entry: Unwritten) -> None:
        """Append the journal lines the disk refused while the job ran; OSError while it still does."""
        if entry.lines:
            writer = journal.JournalWriter(self.spool.job_dir(key) / "journal.jsonl", self.spool.fsync)
            writer.write_lines(entry.lines)
            entry.lines = writer.close()
            if entry.lines:
                raise writer.error or OSError(f"{len(entry.lines)} journal lines not written")

    def _records_at_close(self) -> None:
        """The agent stops: records waiting only for Slurm's answer are written; the others are logged
        and left to the next agent (their journals stay in the spool)."""
        for key, entry in list(self.unwritten.items()):
            if entry.asking is not None:
                entry.asking.join()  # at most `sampler.slurm_query_s`
                self._try_write(key)

    def _release_unwritten(self) -> None:
        for key, entry in self.unwritten.items():
            os.close(entry.lock)
            self.log("warning", f"job {key}: record not written yet; its journal stays for the next agent")
        self.unwritten.clear()
