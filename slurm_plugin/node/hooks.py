"""Slurm Prolog and Epilog entry points: start and stop this job's sampler, and always exit 0.

A non-zero exit or a hang drains the node (slurm.conf.5, "PROLOG AND EPILOG SCRIPTS"), so this is
an error boundary: every failure becomes one log line. The prolog only writes the job's spool entry
and wakes the agent; the epilog records the stop and asks the agent to end the job (the agent writes
the record after answering) and, if the agent is gone, builds the record from the journal itself and
marks it partial.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from slurm_plugin.config_location import ConfigError
from slurm_plugin.eventlog import EventLog
from slurm_plugin.node import agent_client, fastpath, hook_settings, jobenv, jobfacts
from slurm_plugin.node.hook_settings import HookSettings
from slurm_plugin.node.spool import NO_PROLOG_AFTER_REQUEUE, Spool, finalize

HARD_LIMIT_S = 30  # well under any sane PrologEpilogTimeout; the epilog's own waits are shorter
NOTIFY_TIMEOUT_S = 1.0


class _Timeout(BaseException):
    pass


def prolog(settings: HookSettings, log: EventLog) -> None:
    info = jobenv.from_env(os.environ, settings.cluster, settings.node)
    spool = Spool(settings.spool, settings.journal_fsync)
    spool.prepare()
    now = time.time()
    for problem in spool.adopt_incoming(settings.cluster, settings.node, info.job_id):
        log("error", f"job {info.key}: prolog message {problem}")
    for key in spool.end_runs(info.job_id, now, keep=info.key):  # the agent finalises it at its next scan
        log("warning", f"job {info.key}: run {key} of this job had no epilog here; ended now")
    # Slurm may give the id of a job still being finalised here to a new one; the agent sends such a
    # prolog down this path, which waits for the other job to leave the spool.
    spool.create_job_after(info, now)
    try:
        agent_client.notify(spool.socket, {"op": "start", "key": info.key}, NOTIFY_TIMEOUT_S)
    except OSError:
        if _may_spawn(log, info.key):
            agent_client.spawn_agent(settings.source)
            log("info", f"job {info.job_id}: started the node agent")


def _may_spawn(log: EventLog, key: str) -> bool:
    """False, with one line saying so, where the hook runs inside a job's cgroup (RunInJob)."""
    inside = fastpath.job_cgroup()
    if inside is None:
        return True
    log(
        "error",
        f"job {key}: this hook runs inside a job's cgroup ({inside[:120]}), as with PrologFlags=RunInJob, "
        "which jobcarbon does not support: no agent started here; the job waits in the spool for an "
        "agent run as a service (docs/install.md)",
    )
    return False


def epilog(settings: HookSettings, log: EventLog) -> None:
    info = jobenv.from_env(os.environ, settings.cluster, settings.node)
    spool = Spool(settings.spool, settings.journal_fsync)
    for problem in spool.adopt_incoming(settings.cluster, settings.node, info.job_id):
        log("error", f"job {info.key}: prolog message {problem}")
    # Every run of the job here, whatever restart count it started under: a requeued job's epilog
    # already carries the next run's count (docs/install.md).
    ended = spool.end_runs(info.job_id, time.time(), facts=jobfacts.end_facts(os.environ))
    for key in ended:
        _stop(spool, settings, log, key)
    if not ended and info.restart_count:
        log("warning", f"job {info.key}: {NO_PROLOG_AFTER_REQUEUE}")


def _stop(spool: Spool, settings: HookSettings, log: EventLog, key: str) -> None:
    """Ask the agent to finalise one run; build its record here if the agent cannot."""
    try:
        reply = agent_client.request(spool.socket, {"op": "stop", "key": key}, settings.stop_timeout_s)
        if reply.get("ok"):
            return
        problem = f"agent could not finalise: {reply.get('error', 'no record')}"
    except OSError as exc:
        problem = f"agent unreachable ({exc.__class__.__name__})"
    _finalize_without_agent(spool, settings, log, key, problem)


def _finalize_without_agent(
    spool: Spool, settings: HookSettings, log: EventLog, key: str, problem: str
) -> None:
    """Build the record from the journal when the agent is dead; leave it to a live but slow one. The
    record has the epilog's exit status but no Slurm state: that exists only after the epilog."""
    try:
        fd = spool.lock_job(key, wait_s=0.5)
    except FileNotFoundError:
        return  # the agent finalised the job between our request and now: nothing left to do
    if fd is None:
        log("warning", f"job {key}: {problem}; the agent still holds the job and will finalise it")
        return
    try:
        end_s = spool.stop_time(key) or time.time()
        reasons = [f"sampler not running at job end: {problem}"]
        slurm = jobfacts.combine(spool.end_facts(key).get("exit"), {}, spool.load_job(key)[0].job_gpus)
        path = finalize(spool, key, end_s, reasons, settings.outbox, slurm)
    finally:
        os.close(fd)
    log("warning", f"job {key}: {problem}; partial record written to {path}")
    if not _may_spawn(log, key):
        return
    if spool.job_keys():
        agent_client.spawn_agent(settings.source)  # other jobs on this node still need a sampler
    agent_client.spawn_delivery(settings.source)


def main(argv: list[str] | None = None) -> int:
    """Run the hook named by argv[0] ("prolog" or "epilog"); whatever happens, return 0."""
    name = (argv if argv is not None else sys.argv[1:2] or ["?"])[0]
    log = EventLog(name, None)
    try:
        signal.signal(signal.SIGALRM, _raise_timeout)
        signal.signal(signal.SIGTERM, _raise_timeout)
        signal.alarm(HARD_LIMIT_S)
        settings = hook_settings.load()
        log = EventLog(name, settings.log_file)
        {"prolog": prolog, "epilog": epilog}[name](settings, log)
    except ConfigError as exc:
        log("error", f"jobcarbon {name} skipped: {exc}")
    except jobenv.JobEnvError as exc:
        log("error", f"jobcarbon {name} skipped: bad Slurm environment: {exc}")
    except _Timeout:
        log("error", f"jobcarbon {name} stopped: took longer than {HARD_LIMIT_S} s or was signalled")
    except BaseException as exc:
        log("error", f"jobcarbon {name} failed: {type(exc).__name__}: {exc}")
    return 0


def _raise_timeout(signum: int, frame: object) -> None:
    raise _Timeout


if __name__ == "__main__":
    os._exit(main())
