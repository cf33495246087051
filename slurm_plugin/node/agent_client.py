"""Talking to the node agent: one JSON line over its Unix socket, and starting it when it is not there.

The socket only wakes the agent up; the request itself is already on disk in the spool, so a lost
message costs at most one scan interval.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from slurm_plugin.node.fastpath import spawn

MAX_REPLY = 65536


def request(socket_path: Path, message: dict[str, object], timeout_s: float) -> dict[str, object]:
    """Send one request and wait up to `timeout_s` for the reply; raises OSError when unreachable."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout_s)
        connection.connect(str(socket_path))
        connection.sendall(json.dumps(message).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n") and len(reply) < MAX_REPLY:
            chunk = connection.recv(4096)
            if not chunk:
                break
            reply += chunk
    try:
        return json.loads(reply)
    except ValueError:
        raise ConnectionError(f"agent sent an unreadable reply: {reply[:80]!r}") from None


def notify(socket_path: Path, message: dict[str, object], timeout_s: float) -> None:
    """Send a request without waiting for its reply; raises OSError when nobody listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout_s)
        connection.connect(str(socket_path))
        connection.sendall(json.dumps(message).encode() + b"\n")


def spawn_agent(config_file: Path | None) -> int:
    return spawn("slurm_plugin.node.agent", config_file)


def spawn_delivery(config_file: Path | None) -> int:
    return spawn("slurm_plugin.accounting.delivery", config_file)
