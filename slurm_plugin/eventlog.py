"""One-line log records for unattended processes: the hooks, the agent and the sampler loop.

Lines go to the system log and to the configured log file. The system log is syslog where `/dev/log`
exists, else journald's native socket; with neither (a container, a minimal host) and no log file
configured, lines go to the hooks' log file (`$JOBCARBON_HOOK_LOG`), so that none is lost unseen.
Logging never raises: a full disk or a missing socket must not turn into a failed prolog.
"""

from __future__ import annotations

import contextlib
import os
import socket
import syslog
import time
from collections.abc import Callable
from pathlib import Path

from slurm_plugin.defaults import DEFAULT_HOOK_LOG, HOOK_LOG_ENV
from slurm_plugin.safefile import open_append, write_all

SYSLOG_SOCKET = Path("/dev/log")
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")  # journald's native protocol (systemd.journal-fields)
_PRIORITY = {"info": syslog.LOG_INFO, "warning": syslog.LOG_WARNING, "error": syslog.LOG_ERR}

Sink = Callable[[int, str], None]


class EventLog:
    def __init__(
        self,
        component: str,
        log_file: Path | None,
        syslog_socket: Path = SYSLOG_SOCKET,
        journal_socket: Path = JOURNAL_SOCKET,
    ):
        self.component = component
        self._system = _system_log(syslog_socket, journal_socket)
        if log_file is None and self._system is None:
            log_file = Path(os.environ.get(HOOK_LOG_ENV) or DEFAULT_HOOK_LOG)
        self.log_file = log_file

    def __call__(self, level: str, message: str) -> None:
        """Record `message` (made single-line) at `level` ("info", "warning" or "error")."""
        line = " ".join(message.split())[:2000]
        if self._system is not None:
            with contextlib.suppress(OSError):
                self._system(_PRIORITY.get(level, syslog.LOG_INFO), f"{self.component}: {line}")
        if self.log_file is None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        record = f"{stamp} {self.component}[{os.getpid()}] {level}: {line}\n".encode(errors="replace")
        try:
            fd = open_append(self.log_file, 0o640)
        except FileNotFoundError:
            try:
                self.log_file.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                fd = open_append(self.log_file, 0o640)
            except OSError:
                return
        except OSError:
            return
        try:
            write_all(fd, record)
        except OSError:
            pass
        finally:
            os.close(fd)


def _system_log(syslog_socket: Path, journal_socket: Path) -> Sink | None:
    """syslog where its socket exists, else journald's, else None. Python's syslog reports no error
    when /dev/log is missing, so the socket is looked for first."""
    if syslog_socket.is_socket():
        syslog.openlog("jobcarbon", syslog.LOG_PID, syslog.LOG_DAEMON)
        return syslog.syslog
    if journal_socket.is_socket():
        return _journald(journal_socket)
    return None


def _journald(path: Path) -> Sink:
    """A sink that sends each line to journald as one datagram."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)  # a stalled journald drops the line rather than stall a hook

    def send(priority: int, line: str) -> None:
        sock.sendto(_journal_datagram(priority, line), str(path))

    return send


def _journal_datagram(priority: int, line: str) -> bytes:
    """journald's native protocol: KEY=value lines; `line` holds no newline."""
    fields = {
        "PRIORITY": priority,
        "SYSLOG_FACILITY": syslog.LOG_DAEMON >> 3,
        "SYSLOG_IDENTIFIER": "jobcarbon",
        "SYSLOG_PID": os.getpid(),
        "MESSAGE": line,
    }
    return "".join(f"{key}={value}\n" for key, value in fields.items()).encode(errors="replace")
