"""Talking to the node agent: one JSON line over its Unix socket, and starting it when it is not there.

The socket only wakes the agent up; the request itself is already on disk in the spool, so a lost
message costs at most one scan interval.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

MAX_REPLY = 65536
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
    return spawn("slurm_plugin.agent", config_file)


def spawn_delivery(config_file: Path | None) -> int:
    return spawn("slurm_plugin.delivery", config_file)


def spawn(module: str, config_file: Path | None) -> int:
    """Start `python -m module` fully detached: own session, stdio on /dev/null, no inherited fds.

    slurmd waits for EOF on the prolog's stdout pipe and kills the prolog's process group on timeout
    (src/common/run_command.c), so the agent must hold neither.
    """
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
    if config_file is not None:
        env["JOBCARBON_CONFIG"] = str(config_file)
    # -S skips site's .pth processing; pass the path this process resolved instead.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    argv = [sys.executable, "-S", "-m", module]
    return os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
