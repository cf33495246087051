"""The few settings the prolog and epilog need, cached as JSON so they skip YAML validation.

The prolog must return in a few tens of milliseconds; importing PyYAML and validating the schema
costs more than the rest of it. The cache is keyed by the config file's path and stamped with its
inode, size and mtime, so any edit of the file invalidates it. It lives in a root-owned runtime
directory (`$JOBCARBON_RUNDIR`, default /run/jobcarbon), with the pointer to the agent's socket that
the prolog's fast path (fastpath.py) reads.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from slurm_plugin.config_location import config_path
from slurm_plugin.node import fastpath
from slurm_plugin.node.spool import Spool
from slurm_plugin.safefile import atomic_write, ensure_dir, read_nofollow

PATHS = ("source", "spool", "outbox", "log_file")


class HookSettings(NamedTuple):
    """What a hook needs of the configuration, cached as JSON beside it (no YAML on the hooks' path)."""

    source: Path | None
    cluster: str
    node: str
    spool: Path
    outbox: Path
    log_file: Path | None
    journal_fsync: bool
    stop_timeout_s: float

    def to_json(self, stamp: str) -> bytes:
        fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in self._asdict().items()}
        return json.dumps({"stamp": stamp, **fields}).encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HookSettings:
        fields: dict[str, Any] = {k: data[k] for k in cls._fields}
        fields.update({k: Path(fields[k]) for k in PATHS if fields[k]})
        return cls(**fields)


def load() -> HookSettings:
    """Settings from the cache when it matches the config file, else from a full load (then cached).

    Either way the fast path's pointer to the agent's socket and the spool is (re)written if missing or
    stale: only a hook that could not take the fast path gets here."""
    path = config_path()
    try:
        info = os.stat(path)
    except OSError:
        return _full_load()  # raises the config module's one-line error, or gives the defaults
    stamp = fastpath.stamp(info)  # the pointer's too: one notion of "this version of the file"
    cache = Path(fastpath.cache_stem(str(path)) + ".json")
    settings = _cached(cache, stamp)
    if settings is None:
        settings = _full_load()
        _store(cache, settings.to_json(stamp))
    spool = Spool(settings.spool)
    _store(cache.with_suffix(".socket"), f"{stamp}\n{spool.socket}\n{spool.root}\n".encode())
    return settings


def _cached(cache: Path, stamp: str) -> HookSettings | None:
    """The cached settings if they are the config file's as it is now; None otherwise (or unreadable)."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads(read_nofollow(cache))
        if data.get("stamp") == stamp:
            return HookSettings.from_json(data)
    return None


def _full_load() -> HookSettings:
    from slurm_plugin import config

    full = config.load()
    return HookSettings(
        source=full.source,
        cluster=full.cluster or "",
        node=full.node or "",
        spool=full.paths.spool,
        outbox=full.paths.outbox,
        log_file=full.paths.log_file,
        journal_fsync=full.sampler.journal_fsync,
        stop_timeout_s=full.sampler.stop_timeout_s,
    )


def _store(path: Path, data: bytes) -> None:
    """Best effort, and only when it changes: a cache or pointer that cannot be written only costs the
    next hook a full load."""
    with contextlib.suppress(OSError):
        if read_nofollow(path) == data:
            return
    with contextlib.suppress(OSError):  # SpoolError included
        ensure_dir(path.parent)
        atomic_write(path, data, fsync=False)
