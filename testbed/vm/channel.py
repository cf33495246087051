"""The host's command channel into a node: one JSON request per line over the node's virtio-serial
port (a unix socket on the host), answered by testbed/vmguest.py's `agent` inside the node, so the
host needs no login, ssh or network route into the VM."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
from pathlib import Path

from testbed.host import ClusterError


def run(port: Path, shell: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a shell command as root on the node behind `port`; its status and output come back.

    Replies carry the request's id: a reply left over from an earlier caller that gave up is skipped."""
    request_id = secrets.token_hex(8)
    request = json.dumps({"id": request_id, "sh": shell, "timeout": timeout_s}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.settimeout(timeout_s + 30)
        channel.connect(str(port))
        channel.sendall(request)
        reader = channel.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                raise ClusterError(f"{port}: the node's agent closed the channel")
            reply = json.loads(line)
            if reply.get("id") == request_id:
                return subprocess.CompletedProcess(shell, reply["rc"], reply["out"], reply["err"])
