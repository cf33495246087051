"""`jobcarbon doctor`: what this node can measure, and why not, one check per data source.

Absent sources are normal (a CPU node has no NVML) and reported as such; only a broken configuration
or an unusable spool makes the node unable to produce records.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slurm_plugin import config as config_module
from slurm_plugin.node import agent_client
from slurm_plugin.node.spool import Spool
from slurm_plugin.sensors.base import Probe, Sensor, SensorUnavailable, Status
from slurm_plugin.sensors.registry import NODE_SENSORS


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "absent", "warning" or "error"
    detail: str


def run(config: config_module.Config) -> list[Check]:
    """Every check on a loaded configuration (one that does not load is reported by the command)."""
    source = str(config.source) if config.source else "no file: built-in defaults"
    checks = [Check("config", "ok", source)]
    probes = (check_sensors, check_spool, check_outbox, check_database)
    for probe in probes:
        try:
            checks.extend(probe(config))
        except Exception as exc:  # a probe bug must not hide the other checks
            checks.append(
                Check(probe.__name__.removeprefix("check_"), "error", f"{type(exc).__name__}: {exc}")
            )
    return checks


# Sources the agent cannot sample without: their absence is an error, not a normal node.
REQUIRED = frozenset({"procfs", "cgroup"})
# What the sampler does instead when a source is not usable.
FALLBACK = {"rapl": "CPU energy will be estimated (TDP x utilisation), flagged"}


def check_sensors(config: config_module.Config) -> list[Check]:
    """One verdict per node sensor of the registry, then what each found (GPUs, ignored zones)."""
    checks: list[Check] = []
    for name, open_sensor in NODE_SENSORS.items():
        probe = _probe(open_sensor, config)
        checks.append(Check(name, _verdict(name, probe.status), probe.reason))
        if probe.status is not Status.OK and name in FALLBACK:
            checks.append(Check(name, "ok", FALLBACK[name]))
        checks += [Check(f.name, _verdict(name, f.status), f.detail) for f in probe.findings]
    return checks


def _probe(open_sensor: Callable[[config_module.Config], Sensor], config: config_module.Config) -> Probe:
    """The sensor's probe; a bug in one sensor must not hide the others."""
    try:
        sensor = open_sensor(config)
        try:
            return sensor.probe()
        finally:
            sensor.close()
    except SensorUnavailable as exc:
        return Probe(exc.status, str(exc))
    except Exception as exc:
        return Probe(Status.ERROR, f"{type(exc).__name__}: {exc}")


def _verdict(name: str, status: Status) -> str:
    """A sensor status as a doctor status: absent is normal unless the agent needs the source."""
    if status in (Status.OK, Status.NOT_SUPPORTED):
        return "ok"
    if name in REQUIRED:
        return "error"
    return "absent" if status is Status.ABSENT else "warning"


def check_spool(config: config_module.Config) -> list[Check]:
    spool = Spool(config.paths.spool)
    problem = _unsafe_dir(spool.root)
    if problem:
        return [Check("spool", "error", problem)]
    try:
        reply = agent_client.request(spool.socket, {"op": "status"}, 1.0)
        jobs = reply.get("jobs")
        agent = f"agent pid {reply.get('pid')} sampling {len(jobs) if isinstance(jobs, list) else 0} job(s)"
    except OSError:
        agent = "no agent running (started by the next prolog)"
    return [Check("spool", "ok", f"{spool.root}: {len(spool.job_keys())} job(s) in spool; {agent}")]


def check_outbox(config: config_module.Config) -> list[Check]:
    outbox = config.paths.outbox
    problem = _unsafe_dir(outbox)
    if problem:
        return [Check("outbox", "error", problem)]
    waiting = sum(1 for p in outbox.glob("*.json")) if outbox.is_dir() else 0
    return [Check("outbox", "ok", f"{outbox}: {waiting} record(s) waiting for ingest")]


def check_database(config: config_module.Config) -> list[Check]:
    """Whether this node's deliverer could store its records now (it never creates the database)."""
    from slurm_plugin.accounting.delivery import DELIVER_TIMEOUT_S
    from slurm_plugin.storage import StoreError
    from slurm_plugin.storage.store import Store

    database = config.database
    if not database.deliver_from_nodes:
        return [Check("database", "absent", "deliver_from_nodes is off: records wait for `jobcarbon ingest`")]
    try:
        store = Store.open(database.url, DELIVER_TIMEOUT_S, False, database.password_file)
    except StoreError as exc:
        return [Check("database", "warning", f"records stay in the outbox for now: {exc}")]
    try:
        where, kind = store.db.where, store.db.name
    finally:
        store.close()
    return [Check("database", "ok", f"{kind} at {where}: records are delivered after each job")]


def _unsafe_dir(path: Path) -> str | None:
    """Why `path` cannot serve as a root-owned spool directory, or None when it can (or can be made)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        parent = next((p for p in path.parents if p.exists()), Path("/"))
        return None if os.access(parent, os.W_OK) else f"{path} does not exist and {parent} is not writable"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory (symlinks are refused)"
    if info.st_uid != os.geteuid():
        return f"{path} is owned by uid {info.st_uid}; run as that user or fix ownership"
    if not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return None
