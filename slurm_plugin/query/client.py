"""The client side of the query service (`service.py`): one request, one answer, over a Unix socket.

Kept apart from the service so that `jobcarbon <jobid>` asking the service imports socket and json
only: the SQL and visibility code run in the service.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from slurm_plugin.errors import JobcarbonError

MAX_REQUEST_BYTES = 4096
MAX_ANSWER_BYTES = 64 * 1024 * 1024
REQUEST_TIMEOUT_S = 10.0  # the service's limit for one request; the client waits a little longer


class ServiceError(JobcarbonError):
    """The service cannot be reached or gave no usable answer; the message is one line."""


class Refused(JobcarbonError):
    """The service answered with a refusal: `kind` as in the protocol, the message its one line."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def ask(
    socket_path: Path, request: dict[str, Any], timeout_s: float = REQUEST_TIMEOUT_S + 5
) -> dict[str, Any]:
    """Send one request; the answer's payload, Refused for a refusal, ServiceError if unreachable."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout_s)
    try:
        try:
            conn.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ServiceError(
                f"the jobcarbon query service is not running (nothing at {socket_path})"
            ) from None
        except OSError as exc:
            raise ServiceError(
                f"cannot reach the jobcarbon query service at {socket_path}: {exc.strerror}"
            ) from None
        reply = _exchange(conn, request)
    finally:
        conn.close()
    if reply.get("ok") is True:
        return reply
    raise Refused(str(reply.get("kind")), str(reply.get("error") or "refused")[:500])


def _exchange(conn: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
    try:
        conn.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        chunks, size = [], 0
        while size <= MAX_ANSWER_BYTES:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except TimeoutError:
        raise ServiceError("the jobcarbon query service did not answer in time") from None
    except OSError as exc:
        raise ServiceError(f"the jobcarbon query service connection failed: {exc.strerror or exc}") from None
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise ServiceError("the jobcarbon query service gave no usable answer") from None
    if not isinstance(reply, dict):
        raise ServiceError("the jobcarbon query service gave no usable answer")
    return reply
