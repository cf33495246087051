"""The node agent: one lightweight process that hosts the samplers of every job on the node.

Started on demand by the first prolog (or run permanently with `--persistent`), it serves start/stop
requests on a Unix socket, ticks the shared `NodeSampler`, and exits when no job is left. Requests
that arrive together are served together: one tick for all their starts and stops, the answers, and
only then the GPU readings and records, which no hook waits for. Its only
state is the spool, so a killed agent is replaced by the next prolog or epilog and resumes every
job it finds there; the lost interval is marked in the job's record. A record the outbox refuses
(a full disk) is kept and retried with a backoff; its journal, closed by its end line, stays in the
spool until then, so a successor agent writes the same record.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slurm_plugin import config as config_module
from slurm_plugin import outbox
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.eventlog import EventLog
from slurm_plugin.node import agent_client, jobenv, jobfacts, journal
from slurm_plugin.node.metrics import Exposition, Health, Listener
from slurm_plugin.node.sampler import JobTracker, NodeSampler
from slurm_plugin.node.spool import (
    KEY,
    NO_PROLOG_AFTER_REQUEUE,
    Spool,
    boot_id,
    final_record,
    job_id_of,
    store_record,
)
from slurm_plugin.safefile import ensure_dir, lock_file

MAX_REQUEST = 4096
LOCK_WAIT_S = 10.0
SCAN_INTERVAL_S = 5.0  # the spool scan catches requests whose socket message was lost
ASK_POLL_S = 0.25  # how often a record waiting for Slurm's answer looks for it
MAX_BATCH = 256  # requests served with one tick; more wait for the next round
RETRY_FIRST_S = 1.0  # a record the outbox refused is tried again after this, doubling up to RETRY_MAX_S
RETRY_MAX_S = 60.0
LOG_EVERY_S = 60.0  # a record still not written is logged at most this often


class _SlurmAnswer(threading.Thread):
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
    asking: _SlurmAnswer | None = None  # Slurm's word on how the job ended, being asked for
    tries: int = 0
    next_try: float = 0.0  # time.monotonic()
    logged: float | None = None
    tracker: JobTracker | None = None  # its sampling totals, shown as metrics until the record replaces them


class Agent:
    def __init__(self, config: config_module.Config, log: EventLog, persistent: bool = False):
        self.config = config
        self.log = log
        self.persistent = persistent
        self.spool = Spool(config.paths.spool, config.sampler.journal_fsync)
        self.sampler = NodeSampler(config, log)
        self.job_locks: dict[str, int] = {}
        self.unwritten: dict[str, Unwritten] = {}
        self.server: socket.socket | None = None
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self._delivery_pid: int | None = None
        self._delivery_due = False
        self._delivering: list[Path] = []  # the records the running deliverer found
        self.health = Health()
        metrics = config.metrics
        self.metrics = (
            Exposition(metrics.textfile_dir, metrics.textfile_interval_s, metrics.ended_job_keep_s)
            if metrics.textfile_dir is not None or metrics.agent_listen is not None
            else None
        )
        self.listener: Listener | None = None
        self._metrics_problem: str | None = None
        self._facts: dict[str, dict[str, Any]] = {}  # running jobs' scontrol facts, by key

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self) -> None:
        self._listen()
        self._listen_http()
        interval = self.config.sampler.interval_s
        next_tick = self._tick() + interval
        self._scan()  # the prolog that started us could not notify us: its job is in the spool
        next_scan = time.monotonic() + SCAN_INTERVAL_S
        snapshots = self.config.sampler.snapshot_interval_s
        next_snapshot = time.monotonic() + snapshots
        while not self.stopping:
            waiting = min((e.next_try for e in self.unwritten.values()), default=math.inf) - time.monotonic()
            requests = False
            for key, _ in self.selector.select(max(min(next_tick - time.time(), waiting), 0.0)):
                if key.data is None:
                    requests = True  # the hooks' socket
                else:
                    self._scraped(key.fileobj)
            if requests:
                self._serve()
            if requests or time.monotonic() >= next_scan:
                self._scan()
                next_scan = time.monotonic() + SCAN_INTERVAL_S
            if time.time() >= next_tick:
                next_tick = max(next_tick + interval, self._tick() + interval / 2)
            if snapshots and time.monotonic() >= next_snapshot:
                self._snapshot()
                next_snapshot = time.monotonic() + snapshots
            self._retry_records()
            self._deliver()
            self._publish()
            idle = not self.sampler.jobs and not self.unwritten and not self._holding()
            if idle and not self.persistent and self._idle_exit():
                break
        self._close()

    def _listen(self) -> None:
        """Bind the socket; we hold the agent lock, so any existing socket file is stale."""
        self.spool.prepare()
        self.spool.socket.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            server.bind(str(self.spool.socket))
        finally:
            os.umask(old_umask)
        server.listen(128)
        server.setblocking(False)
        self.selector.register(server, selectors.EVENT_READ)
        self.server = server

    def _listen_http(self) -> None:
        """The agent's own GET /metrics, when configured; failing to bind is logged, never fatal."""
        listen = self.config.metrics.agent_listen
        if listen is None:
            return
        try:
            self.listener = Listener(listen)
        except (OSError, JobcarbonError) as exc:
            self.log("warning", f"metrics: cannot listen on {listen}: {exc}")
            return
        self.listener.register(self.selector)

    def _scraped(self, ready: Any) -> None:
        """A scraper's connection (metrics.agent_listen) can be read."""
        if self.listener is not None and self.metrics is not None:
            self.listener.ready(self.selector, ready, self.metrics.text)

    def _idle_exit(self) -> bool:
        """Stop listening, then look once more: a prolog that raced us either is seen now or starts a
        new agent (which waits for our lock)."""
        self._unlisten()
        self._adopt()
        if self.spool.job_keys():
            self._listen()
            self._scan()
            return False
        return True

    def _unlisten(self) -> None:
        if self.server is not None:
            self.selector.unregister(self.server)
            self.server.close()
            self.server = None
            self.spool.socket.unlink(missing_ok=True)

    def _snapshot(self) -> None:
        """Publish every running job's figures so far (`jobcarbon <jobid>` on a running job)."""
        from slurm_plugin import outbox, record

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

    def _deliver(self) -> None:
        """Start one detached deliverer for records written since the last one started; reap it (it
        failed if a record it found is still in the outbox: the database was away or refused it)."""
        if self._delivery_pid is not None:
            if os.waitpid(self._delivery_pid, os.WNOHANG)[0] == 0:
                return  # still running; a new one starts when it is done
            self._delivery_pid = None
            self.health.delivered(not any(p.exists() for p in self._delivering), time.time())
        if self._delivery_due and self.config.database.deliver_from_nodes:
            self._delivery_due = False
            self._delivering = outbox.pending(self.config.paths.outbox)
            self._delivery_pid = agent_client.spawn_delivery(self.config.source)

    def _publish(self) -> None:
        """Render the metrics when due (and write the textfile); a failure is logged once and never
        stops sampling."""
        if self.metrics is None:
            return
        try:
            self.metrics.update(self.sampler, self.health, self.config.paths.outbox, time.time())
        except OSError as exc:
            if str(exc) != self._metrics_problem:
                self.log("warning", f"metrics textfile not written: {exc}")
            self._metrics_problem = str(exc)
        else:
            self._metrics_problem = None

    def _holding(self) -> bool:
        """Stay a little after the last job, so that its final totals are scraped."""
        return self.metrics is not None and self.metrics.holding(time.time())

    def _close(self) -> None:
        for key, entry in list(self.unwritten.items()):
            if entry.asking is not None:
                entry.asking.join()  # at most `sampler.slurm_query_s`
                self._try_write(key)
        if self._delivery_due and self._delivery_pid is None and self.config.database.deliver_from_nodes:
            agent_client.spawn_delivery(self.config.source)
        self._unlisten()
        self._settle()
        for key in list(self.sampler.jobs):
            self.sampler.remove(key)
        for fd in self.job_locks.values():
            os.close(fd)
        self.job_locks.clear()
        for key, entry in self.unwritten.items():
            os.close(entry.lock)
            self.log("warning", f"job {key}: record not written yet; its journal stays for the next agent")
        self.unwritten.clear()
        if self.listener is not None:
            self.listener.close(self.selector)
        if self.metrics is not None:
            with contextlib.suppress(OSError):
                self.metrics.remove()

    def _tick(self, defer_gpus: bool = False, anchor_for: list[str] | None = None) -> float:
        started = time.perf_counter()
        try:
            now = self.sampler.tick(defer_gpus=defer_gpus, anchor_for=anchor_for or ())
        except Exception as exc:  # the sampler loop boundary: log, keep sampling
            self.log("error", f"sample failed: {type(exc).__name__}: {exc}")
            return time.time()
        self.health.tick(now, time.perf_counter() - started)
        return now

    def _settle(self) -> None:
        try:
            self.sampler.settle()
        except Exception as exc:  # as in _tick
            self.log("error", f"GPU readings failed: {type(exc).__name__}: {exc}")

    # -- jobs ---------------------------------------------------------------------------------

    def _adopt(self, job_id: int | None = None) -> None:
        """Jobs whose prolog found no agent listening (fastpath.py) become job directories."""
        for problem in self.spool.adopt_incoming(self.config.cluster or "", self.config.node or "", job_id):
            self.log("error", f"prolog message {problem}")

    def _scan(self) -> None:
        """Adopt job directories we do not sample yet and finalise jobs whose stop was requested."""
        self._adopt()
        stopping = []
        for key in self.spool.job_keys():
            if key not in self.sampler.jobs and key not in self.unwritten:
                self._start(key)
            if key in self.sampler.jobs and self.spool.stop_time(key) is not None:
                stopping.append(key)
        if stopping:
            self._tick(defer_gpus=True, anchor_for=stopping)
        self._settle()
        for key in stopping:
            self._finish(key)

    def _start(self, key: str, now: float | None = None) -> None:
        fd = self.spool.lock_job(key)
        if fd is None:
            return  # an epilog is finalising it
        try:
            path = self.spool.job_dir(key) / "journal.jsonl"
            end_s = journal.ended(path)
            if end_s is not None:  # sampled to its end by an agent that died before writing the record
                self._write_record(key, Unwritten(fd, end_s, [], []))
                return
            if self._rebooted(key):
                self._finalize_after_reboot(key, fd)
                return
            info, start_s = self.spool.load_job(key)
            resumed = "sampler was not running" if path.exists() else None
            self.sampler.add(info, start_s, path, resumed, now)
        except Exception as exc:
            os.close(fd)
            self.log("error", f"job {key}: cannot start sampling: {type(exc).__name__}: {exc}")
            if isinstance(exc, ValueError | KeyError):
                self.spool.set_aside(key)  # unreadable job.json: keep it for inspection, stop retrying
            return
        self.job_locks[key] = fd
        self.log("info", f"job {key}: sampling started ({len(self.sampler.jobs)} jobs on node)")

    def _rebooted(self, key: str) -> bool:
        recorded, now = self.spool.job_boot_id(key), boot_id()
        return recorded is not None and now is not None and recorded != now

    def _finalize_after_reboot(self, key: str, fd: int) -> None:
        """A job from before a reboot: it died with the node, so close its record at the last sample."""
        path = self.spool.job_dir(key) / "journal.jsonl"
        _info, start_s = self.spool.load_job(key)
        end_s = max(path.stat().st_mtime if path.exists() else start_s, start_s)
        self.log("warning", f"job {key}: the node rebooted during the job; its record is partial")
        self._write_record(key, Unwritten(fd, end_s, ["the node rebooted during the job"], []))

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
                asking = _SlurmAnswer(
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
        if entry.asking is not None and entry.asking.is_alive():
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
            del self.unwritten[key]
            os.close(entry.lock)
            self.log("error", f"job {key}: cannot build its record: {type(exc).__name__}: {exc}")
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

    def _finish_journal(self, key: str, entry: Unwritten) -> None:
        """Append the journal lines the disk refused while the job ran; OSError while it still does."""
        if entry.lines:
            writer = journal.JournalWriter(self.spool.job_dir(key) / "journal.jsonl", self.spool.fsync)
            writer.write_lines(entry.lines)
            entry.lines = writer.close()
            if entry.lines:
                raise writer.error or OSError(f"{len(entry.lines)} journal lines not written")

    # -- requests -----------------------------------------------------------------------------

    def _serve(self) -> None:
        """Answer every waiting request; 128 epilogs ending together make one tick, not 128.

        The starts and stops of the batch share one tick whose GPU readings are deferred; the answers
        go out after it, then come the GPU readings (`NodeSampler.settle`) and the stopped jobs' records.
        """
        answers: list[tuple[socket.socket, dict[str, Any]]] = []
        starting: list[str] = []
        stopping: list[str] = []
        for connection in self._accept_waiting():
            try:
                connection.settimeout(1.0)
                reply = self._handle(self._receive(connection), starting, stopping)
            except (OSError, ValueError) as exc:
                self.log("warning", f"bad request: {exc}")
                connection.close()
                continue
            answers.append((connection, reply))
        if starting or stopping:
            now = self._tick(defer_gpus=True, anchor_for=stopping)
            for key in starting:
                if key not in self.sampler.jobs:  # an epilog in the same batch may have started it
                    self._start(key, now)
        for connection, reply in answers:
            with connection:
                if reply.get("key") in starting:
                    reply["ok"] = reply["key"] in self.sampler.jobs
                with contextlib.suppress(OSError):  # a prolog's notification does not wait for it
                    connection.sendall(json.dumps(reply).encode() + b"\n")
        self._settle()
        for key in stopping:
            self._finish(key)

    def _accept_waiting(self) -> list[socket.socket]:
        connections: list[socket.socket] = []
        while self.server is not None and len(connections) < MAX_BATCH:
            try:
                connection, _ = self.server.accept()
            except BlockingIOError:
                break
            connections.append(connection)
        return connections

    @staticmethod
    def _receive(connection: socket.socket) -> dict[str, Any]:
        data = b""
        while not data.endswith(b"\n"):
            chunk = connection.recv(MAX_REQUEST)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REQUEST:
                raise ValueError("request too long")
        message = json.loads(data)
        if not isinstance(message, dict):
            raise ValueError("request is not an object")
        return message

    def _handle(self, message: dict[str, Any], starting: list[str], stopping: list[str]) -> dict[str, Any]:
        """The reply to one request; jobs to start or stop are added to the batch's lists."""
        if message.get("op") in ("prolog", "epilog"):
            return self._hook(message["op"], message.get("env"), starting, stopping)
        op, key = message.get("op"), str(message.get("key", ""))
        if op == "status":
            return {"ok": True, "pid": os.getpid(), "jobs": sorted(self.sampler.jobs)}
        if op not in ("start", "stop") or not KEY.fullmatch(key):
            return {"ok": False, "error": "unknown request"}
        if op == "start":
            if key not in self.sampler.jobs and key not in starting:
                starting.append(key)
            return {"ok": True, "key": key}
        if key in self.unwritten:
            return {"ok": True}  # sampled to its end; its record waits for the outbox
        if key not in self.sampler.jobs:
            self._adopt(job_id_of(key))
            if key in self.spool.job_keys():
                self._start(key)  # its own tick: a stop for a job we never sampled is rare
        if key not in self.sampler.jobs:
            return {"ok": False, "error": "job not sampled here"}
        if key not in stopping:
            stopping.append(key)
        return {"ok": True}

    def _hook(self, hook: str, env: Any, starting: list[str], stopping: list[str]) -> dict[str, Any]:
        """A hook's fast path (fastpath.py): its Slurm variables, validated as the full path does; then
        the prolog's spool entry written and the job started, or the epilog's stop recorded and the job
        stopped, in the batch's tick. An epilog stops every run of its job id here, a prolog any earlier
        run (requeue: `Spool.end_runs`). A refusal sends the hook down the full path."""
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            return {"ok": False, "error": "env must map names to strings"}
        try:
            info = jobenv.from_env(env, self.config.cluster or "", self.config.node or "")
            self._adopt(info.job_id)
            now = time.time()
            # An epilog ends every run of its job here; a prolog, any earlier run whose epilog never came.
            facts = jobfacts.end_facts(env) if hook == "epilog" else None
            ended = self.spool.end_runs(
                info.job_id, now, keep=None if hook == "epilog" else info.key, facts=facts
            )
            replies = [self._handle({"op": "stop", "key": key}, starting, stopping) for key in ended]
            if hook == "epilog":
                if not ended and info.restart_count:
                    self.log("warning", f"job {info.key}: {NO_PROLOG_AFTER_REQUEUE}")
                failed = [reply for reply in replies if not reply["ok"]]
                return failed[0] if failed else {"ok": True, "ended": ended}
            for key in ended:
                self.log("warning", f"job {info.key}: run {key} of this job had no epilog here; ended now")
            self.spool.create_job(info, now)
        except (jobenv.JobEnvError, OSError) as exc:
            return {"ok": False, "error": str(exc)}
        return self._handle({"op": "start", "key": info.key}, starting, stopping)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobcarbon agent", description=__doc__)
    parser.add_argument("--persistent", action="store_true", help="keep running when no job is left")
    args = parser.parse_args(argv)
    os.closerange(3, 256)
    config = config_module.load()
    log = EventLog("agent", config.paths.log_file)
    spool = Spool(config.paths.spool)
    ensure_dir(spool.root)
    lock = lock_file(spool.agent_lock, LOCK_WAIT_S)
    if lock is None:
        return 0  # a live agent holds the lock and will find the job in the spool
    agent = Agent(config, log, persistent=args.persistent)
    gc.freeze()  # the ~100k objects of start-up are never garbage: keep the collector from rescanning them
    signal.signal(signal.SIGTERM, lambda *_: setattr(agent, "stopping", True))
    log("info", f"agent started (pid {os.getpid()})")
    try:
        agent.run()
    except Exception as exc:
        log("error", f"agent stopped: {type(exc).__name__}: {exc}")
        return 1
    finally:
        os.close(lock)
    log("info", "agent exiting: no job left")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
