"""The agent's request serving: the hooks' messages on its Unix socket, answered a batch at a time.

Requests that arrive together are served together: one tick for all their starts and stops, the
answers, and only then the GPU readings and records, which no hook waits for.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import socket
import time
from typing import Any

from slurm_plugin.node import jobenv, jobfacts
from slurm_plugin.node.agent_records import RecordWriting
from slurm_plugin.node.spool import KEY, NO_PROLOG_AFTER_REQUEUE, job_id_of

MAX_REQUEST = 4096
MAX_BATCH = 256  # requests served with one tick; more wait for the next round


class RequestServing(RecordWriting, abc.ABC):
    """The agent's part that answers the hooks; the job lifecycle it drives is the agent's (agent.py)."""

    server: socket.socket | None

    @abc.abstractmethod
    def _tick(self, defer_gpus: bool = False, anchor_for: list[str] | None = None) -> float: ...

    @abc.abstractmethod
    def _settle(self) -> None: ...

    @abc.abstractmethod
    def _start(self, key: str, now: float | None = None) -> None: ...

    @abc.abstractmethod
    def _adopt(self, job_id: int | None = None) -> None: ...

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
                reply = self._handle(receive(connection), starting, stopping)
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


def receive(connection: socket.socket) -> dict[str, Any]:
    """One request: a JSON object on one line, at most MAX_REQUEST bytes."""
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
