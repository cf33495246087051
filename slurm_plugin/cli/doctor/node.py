"""Doctor's checks of the node: what it can measure and why not, its spool, outbox and database.

Absent sources are normal (a CPU node has no NVML) and reported as such; a missing required source or
an unusable or unsafe spool makes the node unable to produce records, or leaks them.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from slurm_plugin import config as config_module
from slurm_plugin import outbox as outbox_files
from slurm_plugin.cli.doctor.base import Check, Site, open_to_others
from slurm_plugin.cli.doctor.slurm import slurmd_spool
from slurm_plugin.node import agent_client
from slurm_plugin.node.cpu_power import FALLBACK_W_PER_CPU, cpu_power_model
from slurm_plugin.node.ledger_writer import STATE_NAME
from slurm_plugin.node.spool import Spool
from slurm_plugin.sensors import procstat
from slurm_plugin.sensors.base import Probe, Sensor, SensorUnavailable, Status
from slurm_plugin.sensors.rapl import RaplSensor
from slurm_plugin.sensors.registry import NODE_SENSORS
from slurm_plugin.times import iso_z

# Sources the agent cannot sample without: their absence is an error, not a normal node.
REQUIRED = frozenset({"procfs", "cgroup"})


def check_sensors(site: Site) -> list[Check]:
    """One verdict per node sensor of the registry, then what each found (GPUs, ignored zones)."""
    checks: list[Check] = []
    for name, open_sensor in NODE_SENSORS.items():
        probe = _probe(open_sensor, site.config)
        checks.append(Check(name, _verdict(name, probe.status), probe.reason))
        checks += [Check(f.name, _verdict(name, f.status), f.detail) for f in probe.findings]
    return checks


def check_cpu_power(site: Site) -> list[Check]:
    """The TDP and idle power the sampler assumes: the whole CPU estimate without RAPL, the static
    share with it. A figure guessed on a node without RAPL is a warning naming the key to set."""
    cpu = site.config.cpu
    rapl = RaplSensor(site.config.paths.sysfs)
    ncpus = procstat.read_ncpus(site.config.paths.procfs)
    power = cpu_power_model(cpu, rapl.zones, ncpus)
    tdp_from = {
        "cpu.tdp_w": "cpu.tdp_w",
        "rapl": "RAPL's power limit",
        "fallback": f"{FALLBACK_W_PER_CPU:g} W x {ncpus} CPUs; set cpu.tdp_w",
    }[power.tdp_from]
    idle_from = (
        "cpu.idle_power_w"
        if power.idle_from == "cpu.idle_power_w"
        else f"cpu.idle_fraction_of_tdp {cpu.idle_fraction_of_tdp:g} x TDP; set cpu.idle_power_w"
    )
    figures = f"TDP {power.tdp_w:g} W ({tdp_from}), idle {power.idle_w:g} W ({idle_from})"
    if any(z.kind == "package" for z in rapl.zones):
        return [Check("cpu_power", "ok", f"RAPL measures; the static share uses {figures}")]
    guessed = power.tdp_from == "fallback" or power.idle_from != "cpu.idle_power_w"
    detail = f"no RAPL: CPU energy will be estimated (flagged) from {figures}"
    return [Check("cpu_power", "warning" if guessed else "ok", detail)]


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


def check_spool(site: Site) -> list[Check]:
    """The spool holds every running job's state and the agent's socket: root's alone, and not Slurm's."""
    spool = Spool(site.config.paths.spool)
    problems = [
        p for p in (_unsafe_dir(spool.root), _not_private(spool.root), _inside_slurmd_spool(site)) if p
    ]
    if problems:
        return [Check("spool", "error", f"{site.where('paths.spool')} {problem}") for problem in problems]
    try:
        reply = agent_client.request(spool.socket, {"op": "status"}, 1.0)
        jobs = reply.get("jobs")
        agent = f"agent pid {reply.get('pid')} sampling {len(jobs) if isinstance(jobs, list) else 0} job(s)"
    except OSError:
        agent = "no agent running (started by the next prolog)"
    return [Check("spool", "ok", f"{spool.root}: {len(spool.job_keys())} job(s) in spool; {agent}")]


def check_outbox(site: Site) -> list[Check]:
    outbox = site.config.paths.outbox
    problem = _unsafe_dir(outbox)
    if problem:
        return [Check("outbox", "error", problem)]
    waiting = sum(1 for p in outbox.glob("*.json")) if outbox.is_dir() else 0
    return [Check("outbox", "ok", f"{outbox}: {waiting} record(s) waiting for ingest")]


def check_ledger(site: Site) -> list[Check]:
    """Where the node ledger stands: its last node record (`ledger.json`) and the records waiting."""
    if not site.config.ledger.enabled:
        return [
            Check("ledger", "absent", f"{site.where('ledger.enabled')} is false: idle energy is not recorded")
        ]
    waiting = len(outbox_files.pending_node(site.config.paths.outbox))
    try:
        state = json.loads((site.config.paths.spool / STATE_NAME).read_bytes())
        since = f"its last node record ends {iso_z(float(state['t1_s']), 'seconds')}"
    except (OSError, ValueError, KeyError, TypeError):
        since = "no node record yet"
    resident = "between jobs only a resident agent keeps it (jobcarbon-agent.service)"
    return [Check("ledger", "ok", f"{since}; {waiting} waiting in the outbox; {resident}")]


def check_database(site: Site) -> list[Check]:
    """Whether this node's deliverer could store its records now (it never creates the database)."""
    from slurm_plugin.accounting.delivery import DELIVER_TIMEOUT_S
    from slurm_plugin.storage import StoreError
    from slurm_plugin.storage.store import Store

    database = site.config.database
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
    if info.st_uid != 0:
        return f"{path} is owned by uid {info.st_uid}, not root (the agent runs as root)"
    if not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return None


def _not_private(path: Path) -> str | None:
    """Other users must not see which jobs run, nor reach the agent's socket."""
    problem = open_to_others(path, 0o077)
    return f"must be private (0700): {problem}" if problem else None


def _inside_slurmd_spool(site: Site) -> str | None:
    """Slurm's SlurmdSpoolDir is slurmd's (0755, cleaned by it): jobcarbon's spool must be elsewhere."""
    slurmd = slurmd_spool(site)
    if slurmd is None:
        return None
    ours = site.config.paths.spool.resolve()
    if ours == slurmd.resolve() or slurmd.resolve() in ours.parents:
        return f"{ours} is within Slurm's SlurmdSpoolDir {slurmd}: use a directory of its own"
    return None
