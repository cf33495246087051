"""The hooks' fast path: hand the job's Slurm environment to the node agent in one message.

A hook that imports the spool, JSON and path machinery spends ~40 ms in imports alone, and the
prolog must return within ~50 ms. This module is all a hook imports (`os`, `sys` and C modules): it
finds the agent's socket and the spool through a pointer file that the full path (`hookconfig`)
leaves beside its settings cache, and sends the variables `jobenv` reads. A running agent answers
once it has done the hook's work: a prolog's spool entry written, an epilog's stop recorded, each
with the node's CPU reading taken; GPU readings and the epilog's record follow the answer
(`agent.Agent._serve`). A prolog that finds no agent listening (a node's first job, or the first
after the agent exited) leaves the same message in the spool's `incoming/` directory and starts an
agent, which adopts it before it serves any request; an epilog that comes first adopts it itself
(`Spool.adopt_incoming`), so no job is lost or sampled forever. Anything unusual (no pointer, a
config file changed since, a refusal, no answer in time, an odd job id) returns False, and the hook
takes the full path in `hooks`, which validates, logs, starts an agent or finalises the job itself.
The socket and the spool are root's alone, so only a root hook can speak to the agent, which
validates the variables as the full path does.
"""

from __future__ import annotations

import _socket
import os
import sys
import time
from _collections_abc import Mapping  # loaded at start-up already; collections.abc is not
from _json import encode_basestring_ascii as _quote

from slurm_plugin.defaults import CONFIG_ENV, DEFAULT_CONFIG, DEFAULT_RUNDIR, RUNDIR_ENV

INCOMING = "incoming"  # in the spool: prologs that found no agent (Spool.adopt_incoming)
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# An agent answers a hook in milliseconds (an epilog's record is written after the answer); past this,
# the full path, which finds the work done or does it.
TIMEOUT_S = {"prolog": 2.0, "epilog": 10.0}
OK = b'{"ok": true'
# What `jobenv.from_env` and `jobfacts.end_facts` read (tests/node/test_fastpath.py holds them equal), and
# nothing a job controls.
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
    "SLURM_CONF",
    "SLURM_JOB_START_TIME",
    "SLURM_JOB_EXIT_CODE2",  # what `jobfacts.end_facts` reads
)


SELF_CGROUP = "/proc/self/cgroup"


def job_cgroup(path: str = SELF_CGROUP) -> str | None:
    """The Slurm job cgroup this process runs in, if any (cgroup(7) lines "id:controllers:path").

    With PrologFlags=RunInJob (Slurm 24.11+) slurmstepd runs the prolog and epilog inside the job's
    extern step; an agent started from there would be charged to the job, see only its devices and be
    killed with it, so the hooks then start nothing and only hand the job to an agent already running.
    """
    try:
        with open(path, "rb") as handle:
            text = handle.read(65536).decode("ascii", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        cgroup = line.split(":", 2)[-1]
        for part in cgroup.split("/"):
            if part == "step_extern" or (part.startswith("job_") and part[4:].isdigit()):
                return cgroup
    return None


def cache_stem(config_file: str) -> str:
    """The runtime-directory path, less its suffix, of the cached hook settings for a config file."""
    name = os.path.abspath(config_file).replace("/", "_")[-200:]
    return os.path.join(os.environ.get(RUNDIR_ENV) or DEFAULT_RUNDIR, f"hooks{name}")


def stamp(info: os.stat_result) -> str:
    """What identifies a version of the config file: any edit changes it."""
    return f"{info.st_ino} {info.st_size} {info.st_mtime_ns}"


def hand_over(environ: Mapping[str, str], hook: str) -> bool:
    """True when the hook's work is done or left safely to an agent ("prolog" or "epilog"); False: the
    full path must run."""
    config = environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    try:
        with open(cache_stem(config) + ".socket", "rb") as pointer:  # written by root in a root dir
            written, socket_path, spool = pointer.read(4096).decode().split("\n")[:3]
        if written != stamp(os.stat(config)):
            return False
        variables = ",".join(f"{_quote(k)}:{_quote(environ[k])}" for k in FORWARDED if k in environ)
        message = f'{{"op":{_quote(hook)},"env":{{{variables}}}'
        connection = _connect(socket_path, TIMEOUT_S[hook])
        if connection is None:  # no agent: the full path says why none is started in a job's cgroup
            cold = hook == "prolog" and os.path.isabs(spool) and job_cgroup() is None
            return cold and _leave_for_new_agent(environ, spool, config, message)
        return _ask(connection, f"{message}}}\n".encode())
    except (OSError, ValueError):
        return False


def _connect(socket_path: str, timeout_s: float) -> _socket.socket | None:
    """A connection to the agent, or None when no agent listens (socket missing or refused)."""
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    connection.settimeout(timeout_s)
    try:
        connection.connect(socket_path)
    except (FileNotFoundError, ConnectionRefusedError):
        connection.close()
        return None
    except OSError:
        connection.close()
        raise
    return connection


def _ask(connection: _socket.socket, message: bytes) -> bool:
    try:
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


def _leave_for_new_agent(environ: Mapping[str, str], spool: str, config: str, message: str) -> bool:
    """Write the prolog's message to <spool>/incoming/<jobid>.<restart>.json and start an agent."""
    job_id, restart = environ.get("SLURM_JOB_ID", ""), environ.get("SLURM_JOB_RESTART_COUNT") or "0"
    if not (_plain_number(job_id) and _plain_number(restart)):
        return False  # the full path names the problem in the log
    name = f"{job_id}.{restart}.json"
    # The boot too: a message found after a reboot is a job the reboot ended (agent._rebooted).
    data = f'{message},"time":{time.time()!r},"boot":{_quote(boot_id() or "")}}}\n'.encode()
    directory = os.open(os.path.join(spool, INCOMING), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        temporary = f".{name}.{os.getpid()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o600, dir_fd=directory)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            os.unlink(temporary, dir_fd=directory)
            return False
        os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        os.close(directory)
    spawn("slurm_plugin.node.agent", config)
    return True


def boot_id() -> str | None:
    """This boot's id (proc(5)): a job recorded under another boot was cut short by a reboot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as handle:
            return handle.read(64).decode("ascii").strip()
    except (OSError, ValueError):
        return None


def _plain_number(text: str) -> bool:
    return 0 < len(text) <= 10 and text.isascii() and text.isdigit()


def spawn(module: str, config_file: str | os.PathLike[str] | None) -> int:
    """Start `python -S -m module` fully detached: own session, stdio on /dev/null, no inherited fds.

    slurmd waits for EOF on the prolog's stdout pipe and kills the prolog's process group on timeout
    (src/common/run_command.c), so the agent must hold neither. -S skips site's .pth processing: the
    child gets the module path this process resolved instead.
    """
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    if config_file is not None:
        env[CONFIG_ENV] = os.fspath(config_file)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    argv = [sys.executable, "-S", "-m", module]
    return os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
