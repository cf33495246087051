"""`jobcarbon doctor`: what this node can measure, and why not, one check per data source.

Absent sources are normal (a CPU node has no NVML) and reported as such; only a broken configuration
or an unusable spool makes the node unable to produce records.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from slurm_plugin import config as config_module
from slurm_plugin.node import agent_client
from slurm_plugin.node.spool import Spool
from slurm_plugin.sensors import SensorUnavailable, procstat
from slurm_plugin.sensors.cgroup import detect_version


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "absent", "warning" or "error"
    detail: str


def run(config: config_module.Config) -> list[Check]:
    """Every check on a loaded configuration (one that does not load is reported by the command)."""
    source = str(config.source) if config.source else "no file: built-in defaults"
    checks = [Check("config", "ok", source)]
    probes = (check_procfs, check_cgroup, check_rapl, check_nvml, check_spool, check_outbox, check_database)
    for probe in probes:
        try:
            checks.extend(probe(config))
        except Exception as exc:  # a probe bug must not hide the other checks
            checks.append(
                Check(probe.__name__.removeprefix("check_"), "error", f"{type(exc).__name__}: {exc}")
            )
    return checks


def check_procfs(config: config_module.Config) -> list[Check]:
    try:
        cpu = procstat.read_node_cpu(config.paths.procfs)
        memory = procstat.read_mem_total_bytes(config.paths.procfs)
    except (OSError, ValueError) as exc:
        return [Check("procfs", "error", f"{config.paths.procfs}: {exc}")]
    return [Check("procfs", "ok", f"{cpu.ncpus} CPUs, {memory / 1024**3:.1f} GiB memory")]


def check_cgroup(config: config_module.Config) -> list[Check]:
    root = config.paths.cgroupfs
    detected = detect_version(root)
    wanted = config.cgroup.version
    if detected is None:
        return [Check("cgroup", "error", f"{root}: neither a cgroup v2 nor a v1 cpuacct hierarchy")]
    if wanted != "auto" and wanted != detected:
        return [Check("cgroup", "error", f"configured {wanted} but {root} is {detected}")]
    if detected == "v2":
        base = root / config.cgroup.v2_slice
        found = sorted(p.name for p in base.glob("*slurmstepd.scope")) if base.is_dir() else []
    else:
        found = sorted(p.name for p in (root / "cpuacct").glob(f"{config.cgroup.v1_prepend}*"))
    where = ", ".join(found) if found else "no Slurm directory yet (created by slurmstepd at the first job)"
    return [Check("cgroup", "ok", f"{detected} at {root}; {where}")]


def check_rapl(config: config_module.Config) -> list[Check]:
    from slurm_plugin.sensors.rapl import RaplSensor

    sensor = RaplSensor(config.paths.sysfs)
    ok, detail = sensor.available()
    checks = [Check("rapl", "ok" if ok else ("absent" if not sensor.zones else "warning"), detail)]
    if not ok:
        checks.append(Check("rapl", "ok", "CPU energy will be estimated (TDP x utilisation), flagged"))
    checks += [Check("rapl", "ok", f"ignored {zone}: {why}") for zone, why in sensor.ignored]
    return checks


def check_nvml(config: config_module.Config) -> list[Check]:
    from slurm_plugin.sensors.nvml import NvmlSensor

    try:
        sensor = NvmlSensor.open(config.nvml)
    except SensorUnavailable as exc:
        return [Check("nvml", "absent", str(exc))]
    try:
        devices = sensor.devices()
        readings = sensor.read([d.uuid for d in devices])
    finally:
        sensor.close()
    checks = [Check("nvml", "ok", f"{len(devices)} GPU(s)")]
    for index, device in enumerate(devices):
        reading = readings.get(device.uuid)
        energy = "energy counter" if reading and reading.energy_mj is not None else "power only"
        state = reading.status.value if reading else "unread"
        checks.append(
            Check(
                f"gpu {index}",
                "ok" if reading and reading.status.value in ("ok", "not_supported") else "warning",
                f"{device.uuid} {device.name} minor={device.minor} pci={device.pci_bus_id} "
                f"{energy} ({state})",
            )
        )
    return checks


def check_spool(config: config_module.Config) -> list[Check]:
    spool = Spool(config.paths.spool)
    problem = _unsafe_dir(spool.root)
    if problem:
        return [Check("spool", "error", problem)]
    try:
        reply = agent_client.request(spool.socket, {"op": "status"}, 1.0)
        agent = f"agent pid {reply.get('pid')} sampling {len(reply.get('jobs', []))} job(s)"
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
