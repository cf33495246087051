"""What every doctor check takes and gives: the site it looks at, and one verdict line per finding."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from slurm_plugin.config import Config


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "absent", "warning" or "error"
    detail: str


@dataclass(frozen=True)
class Slurm:
    """`scontrol show config` as key -> value (keys as Slurm prints them, cgroup.conf's included)."""

    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        """The value of `key` (any case), None when unset ("(null)", empty or absent)."""
        wanted = key.lower()
        value = next((v for k, v in self.values.items() if k.lower() == wanted), None)
        return None if value in (None, "", "(null)") else value


@dataclass(frozen=True)
class Site:
    """What the checks look at: the loaded configuration and, when scontrol answered, Slurm's."""

    config: Config
    slurm: Slurm | None = None
    slurm_problem: str = "not read"  # why `slurm` is None

    def where(self, key: str) -> str:
        """A config key as an admin finds it: "/etc/jobcarbon/config.yaml: accounting.pue"."""
        return f"{self.config.source or 'built-in defaults'}: {key}"


def open_to_others(path: Path, mask: int) -> str | None:
    """A line saying `path` grants `mask` bits (e.g. 0o044: group/others may read), or None."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    mode = stat.S_IMODE(info.st_mode)
    if not mode & mask:
        return None
    return f"{path} is mode {mode:04o} (chmod {_minus(mask)} {path})"


def _minus(mask: int) -> str:
    """The chmod that takes `mask`'s bits away: go-rwx for 0o077, o-w for 0o002, go-w for 0o022."""
    who = ("g" if mask & 0o070 else "") + ("o" if mask & 0o007 else "")
    what = "w" if not mask & 0o055 else "rwx"
    return f"{who}-{what}"
