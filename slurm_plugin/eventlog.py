"""One-line log records for unattended processes: the hooks, the agent and the sampler loop.

Lines go to the configured log file and to syslog. Logging never raises: a full disk or a missing
/dev/log must not turn into a failed prolog.
"""

from __future__ import annotations

import contextlib
import os
import syslog
import time
from pathlib import Path

from slurm_plugin.safefile import open_append, write_all

_PRIORITY = {"info": syslog.LOG_INFO, "warning": syslog.LOG_WARNING, "error": syslog.LOG_ERR}


class EventLog:
    def __init__(self, component: str, log_file: Path | None):
        self.component = component
        self.log_file = log_file
        syslog.openlog("jobcarbon", syslog.LOG_PID, syslog.LOG_DAEMON)

    def __call__(self, level: str, message: str) -> None:
        """Record `message` (made single-line) at `level` ("info", "warning" or "error")."""
        line = " ".join(message.split())[:2000]
        with contextlib.suppress(OSError):
            syslog.syslog(_PRIORITY.get(level, syslog.LOG_INFO), f"{self.component}: {line}")
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
