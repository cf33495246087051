"""The node agent: one lightweight process that hosts the samplers of every job on the node.

Started on demand by the first prolog (or run permanently with `--persistent`, jobcarbon-agent.service),
it serves start/stop requests on a Unix socket (`agent_requests`), ticks the shared `NodeSampler`, writes
finished jobs' records (`agent_records`), publishes its metrics (`agent_metrics`) and keeps the node
ledger (`ledger_writer`): the node's measured energy per interval, jobs or not. Without jobs it exits,
unless persistent: then it ticks every `ledger.idle_tick_s`, so the ledger covers the idle node too.
Its only state is the spool, so a killed agent is replaced by the next prolog or epilog and resumes every
job it finds there; the lost interval is marked in the job's record, and in the node ledger as a gap.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import selectors
import signal
import socket
import time
from pathlib import Path
from typing import Any

from slurm_plugin import config as config_module
from slurm_plugin import outbox
from slurm_plugin.eventlog import EventLog
from slurm_plugin.node import agent_client, journal
from slurm_plugin.node.agent_metrics import MetricsExposition
from slurm_plugin.node.agent_records import Unwritten
from slurm_plugin.node.agent_requests import RequestServing
from slurm_plugin.node.ledger_writer import LedgerWriter
from slurm_plugin.node.sampler import NodeSampler
from slurm_plugin.node.spool import Spool, boot_id
from slurm_plugin.safefile import ensure_dir, lock_file

LOCK_WAIT_S = 10.0
SCAN_INTERVAL_S = 5.0  # the spool scan catches requests whose socket message was lost


class Agent(RequestServing, MetricsExposition):
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
        self._facts: dict[str, dict[str, Any]] = {}  # running jobs' scontrol facts, by key
        self._init_metrics()
        self.ledger: LedgerWriter | None = None
        if config.ledger.enabled:
            self.ledger = LedgerWriter(config, log, self.sampler.ncpus)
            self.sampler.ledger = self.ledger.ledger

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self) -> None:
        self._listen()
        self._listen_http()
        if self.persistent and self.ledger is not None:
            self.sampler.watch_all_gpus()
        next_tick = self._tick() + self._interval()
        self._scan()  # the prolog that started us could not notify us: its job is in the spool
        next_scan = time.monotonic() + SCAN_INTERVAL_S
        snapshots = self.config.sampler.snapshot_interval_s
        next_snapshot = time.monotonic() + snapshots
        while not self.stopping:
            next_tick = min(next_tick, time.time() + self._interval())  # a job started: its own pace
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
                interval = self._interval()
                next_tick = max(next_tick + interval, self._tick() + interval / 2)
            if snapshots and time.monotonic() >= next_snapshot:
                self._snapshot()
                next_snapshot = time.monotonic() + snapshots
            self._retry_records()
            self._keep_ledger()
            self._deliver()
            self._publish()
            idle = not self.sampler.jobs and not self.unwritten and not self._holding()
            if idle and not self.persistent and self._idle_exit():
                break
        self._close()

    def _interval(self) -> float:
        """The sampler's pace while jobs run (and while an on-demand agent winds down); a resident agent
        without jobs ticks at the ledger's idle pace."""
        if self.sampler.jobs or self.ledger is None or not self.persistent:
            return self.config.sampler.interval_s
        return max(self.config.ledger.idle_tick_s, self.config.sampler.interval_s)

    def _keep_ledger(self) -> None:
        """Write the node ledger's record when due (ledger_writer.py)."""
        if self.ledger is not None and self.ledger.step():
            self._delivery_due = True

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

    def _close(self) -> None:
        self._records_at_close()
        self._unlisten()
        self._settle()
        for key in list(self.sampler.jobs):
            self.sampler.remove(key)
        if self.ledger is not None and self.ledger.close():
            self._delivery_due = True
        for fd in self.job_locks.values():
            os.close(fd)
        self.job_locks.clear()
        self._release_unwritten()
        self.sampler.nvml.close()
        # Only once every job lock is released: a deliverer started earlier held them for a moment (seen
        # as a successor agent's lock_job failing in tests/node/test_agent.py).
        if self._delivery_due and self._delivery_pid is None and self.config.database.deliver_from_nodes:
            agent_client.spawn_delivery(self.config.source)
        self._close_metrics()

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
        if self.ledger is not None:
            self.ledger.learn(info.cluster, info.node)
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
