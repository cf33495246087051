"""The query service, `jobcarbon serve`: read-only answers over a Unix socket, per caller uid.

In `own` visibility mode the database is readable by root only; users' `jobcarbon <jobid>` and
`jobcarbon jobs` connect here instead. The caller is the uid the kernel gives for the peer
(SO_PEERCRED, unix(7)), so nothing the caller sends or sets can change who it is. Protocol: one JSON
request line, one JSON answer line, then the connection closes:

    {"op": "show", "job_id": 123, "cluster": null}  ->  {"ok": true, "summary": {...}}
    (optionally "run": "start:1767225590", one of the id's runs: Slurm reuses ids)
    ... "member": {"separator": "_", "index": 4}  (123_4; "+" for 123+1)  ->  the same
    {"op": "jobs", "since_s": ..., "until_s": ..., ...}  ->  {"ok": true, "list": {...}}
    {"op": "report", "months": "2026-01..2026-03", "by": "account", ...}  ->  {"ok": true, "report": {...}}
    anything refused  ->  {"ok": false, "kind": "not_found" | "not_measured" | "unavailable" | "bad_request",
                           "error": "one line"}

Requests are bounded in size, each connection in time, and concurrent requests in number. Operations
answered by packages this one may not import (the monthly report, in `reports/`) are handed in by the
command that starts the service (`Ops`), with the caller's scope, so the same visibility applies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from slurm_plugin.config import Config
from slurm_plugin.query import arrays, client, job_list, visibility
from slurm_plugin.query.client import MAX_REQUEST_BYTES, ServiceError
from slurm_plugin.query.job_summary import JobNotFound, JobNotMeasured
from slurm_plugin.storage import readonly

REQUEST_TIMEOUT_S = client.REQUEST_TIMEOUT_S  # socket reads and writes, and the SQL of one request
MAX_CONCURRENT = 32
# op -> its answer's payload from (request, reader, the caller's scope, settings); QueryError refuses.
Ops = Mapping[str, Callable[[dict[str, Any], readonly.Reader, visibility.Scope, Config], dict[str, Any]]]
_PEERCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


def peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid


def answer(request: Any, uid: int, settings: Config, ops: Ops | None = None) -> dict[str, Any]:
    """The answer to one decoded request from `uid`; never raises for a bad request."""
    try:
        scope = visibility.scope_for(visibility.Viewer.from_uid(uid), settings.visibility)
        reader = readonly.Reader.open(
            settings.database.url,
            settings.database.busy_timeout_s,
            time.monotonic() + REQUEST_TIMEOUT_S,
            settings.database.password_file,
        )
        try:
            return _dispatch(request, reader, scope, settings, ops or {})
        finally:
            reader.close()
    except JobNotFound as exc:
        return {"ok": False, "kind": "not_found", "error": str(exc)}
    except JobNotMeasured as exc:
        return {"ok": False, "kind": "not_measured", "error": str(exc)}
    except readonly.DatabaseUnavailable as exc:
        return {"ok": False, "kind": "unavailable", "error": str(exc)}
    except readonly.QueryError as exc:
        return {"ok": False, "kind": "bad_request", "error": str(exc)}


def _dispatch(
    request: Any, reader: readonly.Reader, scope: visibility.Scope, settings: Config, ops: Ops
) -> dict[str, Any]:
    if not isinstance(request, dict):
        raise readonly.QueryError("a request is a JSON object")
    op = request.get("op")
    if op == "show":
        return {"ok": True, "summary": arrays.show(reader, scope, request)}
    if op == "jobs":
        wanted = job_list.JobFilter.from_request(request)
        return {"ok": True, "list": job_list.job_list(reader, scope, wanted)}
    if isinstance(op, str) and op in ops:
        return {"ok": True, **ops[op](request, reader, scope, settings)}
    raise readonly.QueryError(f"op must be one of {', '.join(('show', 'jobs', *ops))}")


class _Handler(socketserver.StreamRequestHandler):
    timeout = REQUEST_TIMEOUT_S  # StreamRequestHandler.setup applies it to the connection
    server: _Server

    def handle(self) -> None:
        if not self.server.slots.acquire(blocking=False):
            self._send({"ok": False, "kind": "unavailable", "error": "the query service is busy, try again"})
            return
        try:
            self._send(self._answer())
        finally:
            self.server.slots.release()

    def _answer(self) -> dict[str, Any]:
        uid = peer_uid(self.connection)
        try:
            line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
        except OSError:
            return {"ok": False, "kind": "bad_request", "error": "no request within the time limit"}
        if len(line) > MAX_REQUEST_BYTES or not line.endswith(b"\n"):
            return {
                "ok": False,
                "kind": "bad_request",
                "error": f"a request is one line under {MAX_REQUEST_BYTES} bytes",
            }
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "kind": "bad_request", "error": "a request is one line of JSON"}
        return answer(request, uid, self.server.settings, self.server.ops)

    def _send(self, reply: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the client went away or stopped reading: nothing to tell it
            self.wfile.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, settings: Config, ops: Ops):
        self.settings = settings
        self.ops = ops
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        super().__init__(path, _Handler)


def serve(settings: Config, socket_path: Path, ready: Any = None, ops: Ops | None = None) -> None:
    """Serve until SIGTERM or SIGINT; `ready(path)` is called once the socket accepts connections."""
    reader = readonly.Reader.open(
        settings.database.url,
        settings.database.busy_timeout_s,
        password_file=settings.database.password_file,
    )
    reader.close()  # fail at start, in one line, if the database cannot be read
    if not socket_path.parent.is_dir():  # created by systemd (RuntimeDirectory) or the admin, not here
        raise ServiceError(f"socket {socket_path}: directory {socket_path.parent} does not exist")
    _clear_stale(socket_path)
    server = _Server(str(socket_path), settings, ops or {})
    try:
        os.chmod(socket_path, 0o666)  # noqa: S103 - everyone may ask; the answer depends on who asks
        signal.signal(signal.SIGTERM, _stop)
        if ready is not None:
            ready(socket_path)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        socket_path.unlink(missing_ok=True)


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _clear_stale(path: Path) -> None:
    """Remove a socket left by a previous run; refuse if a service answers there or it is not a socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ServiceError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise ServiceError(f"another query service is listening on {path}")
