"""The hooks' fast path: hand the job's Slurm environment to the running agent in one message.

A hook that imports the spool, JSON and path machinery spends ~40 ms in imports alone, and the prolog
must return within ~50 ms. When an agent is already running (every job but a node's first), this
module is all a hook imports (`os` and two C modules): it finds the agent's socket through a pointer
file that the full path (`hookconfig`) leaves beside its settings cache, sends the variables `jobenv`
reads, and waits for the agent to have done the hook's work: a prolog's spool entry written, an
epilog's record. Anything unusual (no pointer, a config file changed since, no agent, a refusal, no
answer in time) returns False, and the hook takes the full path in `hooks`, which validates, logs,
starts an agent or finalises the job itself. The socket is root's alone (0600), so only a root hook can
speak to the agent, which validates the variables as the full path does.
"""

from __future__ import annotations

import _socket
import os
from _collections_abc import Mapping  # loaded at start-up already; collections.abc is not
from _json import encode_basestring_ascii as _quote

CONFIG_ENV = "JOBCARBON_CONFIG"
DEFAULT_CONFIG = "/etc/jobcarbon/config.yaml"
RUNDIR_ENV = "JOBCARBON_RUNDIR"
DEFAULT_RUNDIR = "/run/jobcarbon"
# An agent answers a prolog in milliseconds, an epilog once the record is written (a week-long job's
# in well under a second); past this, the full path, which finds the work done or does it.
TIMEOUT_S = {"prolog": 2.0, "epilog": 10.0}
OK = b'{"ok": true'
# What `jobenv.from_env` reads (tests/test_fastpath.py holds them equal), and nothing a job controls.
FORWARDED = (
    "SLURM_CLUSTER_NAME",
    "SLURM_JOB_ID",
    "SLURM_JOB_RESTART_COUNT",
    "SLURMD_NODENAME",
    "SLURM_JOB_USER",
    "SLURM_JOB_UID",
    "SLURM_JOB_GID",
    "SLURM_JOB_ACCOUNT",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_SLUID",
    "SLURM_JOB_CPUS_PER_NODE",
    "SLURM_JOB_GPUS",
    "CUDA_VISIBLE_DEVICES",
)


def cache_stem(config_file: str) -> str:
    """The runtime-directory path, less its suffix, of the cached hook settings for a config file."""
    name = os.path.abspath(config_file).replace("/", "_")[-200:]
    return os.path.join(os.environ.get(RUNDIR_ENV) or DEFAULT_RUNDIR, f"hooks{name}")


def stamp(info: os.stat_result) -> str:
    """What identifies a version of the config file: any edit changes it."""
    return f"{info.st_ino} {info.st_size} {info.st_mtime_ns}"


def hand_over(environ: Mapping[str, str], hook: str) -> bool:
    """True when a running agent has done the hook's work ("prolog" or "epilog"); False: the full path
    must run."""
    config = environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    try:
        with open(cache_stem(config) + ".socket", "rb") as pointer:  # written by root in a root dir
            written, socket_path = pointer.read(4096).decode().split("\n")[:2]
        if written != stamp(os.stat(config)):
            return False
        variables = ",".join(f"{_quote(k)}:{_quote(environ[k])}" for k in FORWARDED if k in environ)
        message = f'{{"op":{_quote(hook)},"env":{{{variables}}}}}\n'.encode()
        return _ask(socket_path, message, TIMEOUT_S[hook])
    except (OSError, ValueError):
        return False


def _ask(socket_path: str, message: bytes, timeout_s: float) -> bool:
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        connection.settimeout(timeout_s)
        connection.connect(socket_path)
        connection.sendall(message)
        reply = b""
        while not reply.endswith(b"\n") and len(reply) < 4096:
            chunk = connection.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.startswith(OK)
    finally:
        connection.close()
