"""Load and validate jobcarbon's YAML configuration.

Errors name the file, the line, the dotted key and what is wrong, because the hooks run unattended
on hundreds of nodes and the only feedback an admin gets is one log line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from slurm_plugin import yamlschema
from slurm_plugin.config_location import ENV_VAR, ConfigError, config_path
from slurm_plugin.yamlschema import FRACTION, NON_NEGATIVE, PERCENT, POSITIVE

__all__ = ["ENV_VAR", "Config", "ConfigError", "config_path", "load", "parse", "site_timezone"]


@dataclass(frozen=True)
class Paths:
    """Roots of every file jobcarbon reads or writes; tests and demos point them at simulated trees."""

    sysfs: Path = Path("/sys")
    procfs: Path = Path("/proc")
    cgroupfs: Path = Path("/sys/fs/cgroup")
    spool: Path = Path("/var/spool/jobcarbon")
    outbox: Path = Path("/var/spool/jobcarbon/outbox")
    log_file: Path | None = Path("/var/log/jobcarbon/jobcarbon.log")
    quarantine: Path = Path("/var/spool/jobcarbon/quarantine")


@dataclass(frozen=True)
class Sampler:
    interval_s: float = field(default=10.0, metadata=POSITIVE)
    stop_timeout_s: float = field(default=5.0, metadata=POSITIVE)
    journal_fsync: bool = True
    journal_sync_interval_s: float = 30.0
    snapshot_interval_s: float = 300.0  # a running job's figures so far reach the database this often
    # How long the agent waits, after a job's epilog, for `scontrol` to state how the job ended (0: never ask)
    slurm_query_s: float = 5.0


@dataclass(frozen=True)
class Cgroup:
    version: Literal["auto", "v1", "v2"] = "auto"
    v1_prepend: str = "slurm"
    v2_slice: str = "system.slice"


@dataclass(frozen=True)
class Cpu:
    tdp_w: float | None = field(default=None, metadata=POSITIVE)
    idle_power_w: float | None = field(default=None, metadata=POSITIVE)
    idle_fraction_of_tdp: float = field(default=0.3, metadata=FRACTION)


@dataclass(frozen=True)
class Dram:
    w_per_gb: float = field(default=0.3725, metadata=POSITIVE)
    # The share of measured DRAM energy split by memory held (the cgroup's limit); the rest goes by memory
    # in use (docs/attribution.md).
    static_fraction: float = field(default=0.5, metadata=FRACTION)


@dataclass(frozen=True)
class Nvml:
    enabled: bool = True
    library: Path | None = None
    slurm_index_order: Literal["minor_number", "pci_bus_id"] = "minor_number"
    # Seconds between reads of each GPU's energy counter (also read at job start and end); power is read
    # every tick. The counter costs ~3.85 ms of CPU per read on an H200 (docs/benchmarks.md).
    counter_interval_s: float = field(default=120.0, metadata=POSITIVE)
    # Seconds before a failed NVML start-up (driver not loaded yet) is tried again; doubled after each
    # failure up to 20 times this. Jobs that started meanwhile get their GPUs from then on.
    retry_interval_s: float = field(default=30.0, metadata=POSITIVE)


@dataclass(frozen=True)
class Database:
    url: str = "sqlite:////var/lib/jobcarbon/jobcarbon.db"
    password_file: str | None = None  # PostgreSQL: a file only its owner can read; else PGPASSWORD, .pgpass
    busy_timeout_s: float = field(default=10.0, metadata=POSITIVE)
    deliver_from_nodes: bool = True


@dataclass(frozen=True)
class PueRule:
    """A PUE for a partition and/or a period [start, end) of UTC dates; the most specific rule wins."""

    pue: float = field(metadata=POSITIVE)
    partition: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None


@dataclass(frozen=True)
class MarketFactor:
    """A contractual emission factor (the supplier's mix, or certificates: EAC, PPA) for reports'
    market-based scope 2 figure: one cluster's (or every cluster's) months whose first day is in
    [start, end)."""

    g_co2e_per_kwh: float = field(metadata=NON_NEGATIVE)
    instrument: str  # what it is, for the report: "supplier mix 2026, Stadtwerke X"
    cluster: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None


@dataclass(frozen=True)
class Accounting:
    zone: str | None = None  # grid zone of the site, Electricity Maps codes: "DE", "DK-DK1", "GB"
    country: str | None = None  # ISO 3166 alpha-3 for the country yearly average: "DEU"
    constant_g_per_kwh: float | None = field(default=None, metadata=POSITIVE)
    pue: float = field(default=1.0, metadata=POSITIVE)
    pue_rules: tuple[PueRule, ...] = ()
    timezone: str = "UTC"
    market_factors: tuple[MarketFactor, ...] = ()  # reports' market-based scope 2; none: not reported


@dataclass(frozen=True)
class Embodied:
    """Manufacturing emissions (scope 3) per device, spread over its lifetime; null leaves them out."""

    gpu_kg_co2e: float | None = field(default=None, metadata=POSITIVE)
    gpu_lifetime_years: float = field(default=5.0, metadata=POSITIVE)
    node_kg_co2e: float | None = field(default=None, metadata=POSITIVE)
    node_lifetime_years: float = field(default=5.0, metadata=POSITIVE)


@dataclass(frozen=True)
class Provider:
    """One intensity series to fetch; `zone` is the name it is stored and looked up under."""

    name: Literal["electricitymaps", "gb", "energidataservice"]
    zone: str
    base_url: str | None = None
    api_version: str = "v3"
    token_file: Path | None = None
    emission_factor_type: Literal["lifecycle", "direct"] = "lifecycle"
    region_id: int | None = None
    postcode: str | None = None
    area: Literal["DK1", "DK2"] | None = None


@dataclass(frozen=True)
class Intensity:
    providers: tuple[Provider, ...] = ()
    timeout_s: float = field(default=10.0, metadata=POSITIVE)
    max_retries: int = 3
    backfill_days: float = field(default=7.0, metadata=POSITIVE)


@dataclass(frozen=True)
class Coordinator:
    """Users who may see every job of a Slurm account (like a Slurm account coordinator)."""

    account: str
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class Visibility:
    mode: Literal["all", "own"] = "own"
    admins: tuple[str, ...] = ()  # user names that see everything; uid 0 always does
    coordinators: tuple[Coordinator, ...] = ()
    socket: Path | None = None  # the query service's Unix socket; when set, the CLI asks it


@dataclass(frozen=True)
class Mail:
    """`jobcarbon-mail`, slurmctld's MailProg when a site sets it (docs/install.md): off otherwise."""

    program: Path = Path("/bin/mail")  # the real mail program it hands over to (Slurm's default MailProg)
    wait_s: float = field(default=20.0, metadata=NON_NEGATIVE)  # how long to wait for the job's record


@dataclass(frozen=True)
class Metrics:
    """Prometheus metrics: the agent's textfile and `jobcarbon metrics serve` (docs/monitoring.md)."""

    textfile_dir: Path | None = None  # node_exporter's --collector.textfile.directory; null: no textfile
    textfile_interval_s: float = field(default=30.0, metadata=NON_NEGATIVE)  # 0: every tick
    ended_job_keep_s: float = field(default=60.0, metadata=NON_NEGATIVE)
    agent_listen: str | None = None  # HOST:PORT where the agent also answers GET /metrics itself
    listen: str = "127.0.0.1:9877"  # `jobcarbon metrics serve`: an admin endpoint, loopback by default
    top_n: int = field(default=20, metadata=POSITIVE)  # accounts and users named; the rest are "other"
    stale_after_s: float = field(default=3600.0, metadata=POSITIVE)  # a node without records this long


@dataclass(frozen=True)
class Advice:
    """When `jobcarbon <jobid>` advises on a finished job (query/advice.py, docs/querying.md)."""

    cpu_efficiency_below: float = field(default=0.5, metadata=FRACTION)  # CPU time / allocated core time
    memory_used_below: float = field(default=0.5, metadata=FRACTION)  # memory peak / memory requested
    min_elapsed_s: float = 300.0  # shorter jobs get no efficiency advice (start-up dominates)
    # A GPU under this utilisation (%) in a tick counts that tick's energy as idle (docs/attribution.md,
    # "Waste"); the node writes it into each job's journal, so a record keeps the rule it was built with.
    gpu_idle_util_pct: float = field(default=5.0, metadata=PERCENT)
    gpu_idle_fraction_above: float = field(default=0.5, metadata=FRACTION)  # idle share that gets a note


@dataclass(frozen=True)
class Ledger:
    """The node ledger (docs/methodology.md): each node's measured energy per interval, jobs or not, and the
    remainder no job was given; reports share that remainder out by `share_by` (docs/reports.md)."""

    enabled: bool = True
    interval_s: float = field(default=300.0, metadata=POSITIVE)  # one ledger row per node and interval
    idle_tick_s: float = field(default=60.0, metadata=POSITIVE)  # a resident agent's tick without jobs
    record_interval_s: float = field(default=900.0, metadata=POSITIVE)  # a node record this often
    share_by: Literal["energy", "core_hours"] = "energy"  # the `proportional` policy's key


@dataclass(frozen=True)
class Config:
    cluster: str | None = None
    node: str | None = None
    paths: Paths = field(default_factory=Paths)
    sampler: Sampler = field(default_factory=Sampler)
    cgroup: Cgroup = field(default_factory=Cgroup)
    cpu: Cpu = field(default_factory=Cpu)
    dram: Dram = field(default_factory=Dram)
    nvml: Nvml = field(default_factory=Nvml)
    database: Database = field(default_factory=Database)
    accounting: Accounting = field(default_factory=Accounting)
    embodied: Embodied = field(default_factory=Embodied)
    intensity: Intensity = field(default_factory=Intensity)
    visibility: Visibility = field(default_factory=Visibility)
    metrics: Metrics = field(default_factory=Metrics)
    advice: Advice = field(default_factory=Advice)
    mail: Mail = field(default_factory=Mail)
    ledger: Ledger = field(default_factory=Ledger)
    source: Path | None = field(default=None, compare=False)


def load(path: str | os.PathLike[str] | None = None, *, missing_ok: bool = True) -> Config:
    """Read and validate the config; a missing default file means built-in defaults."""
    target = config_path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok and path is None and not os.environ.get(ENV_VAR):
            return Config()
        raise ConfigError(f"{target}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{target}: cannot read: {exc}") from None
    return parse(text, target)


def parse(text: str, source: Path) -> Config:
    """Validate YAML text against the Config dataclasses."""
    try:
        node = yaml.compose(text, Loader=yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: invalid YAML: {problem}") from None
    if node is None or yamlschema.is_null(node):
        return Config(source=source)
    try:
        built = yamlschema.build(Config, node, "", source)
    except yamlschema.SchemaError as exc:
        raise ConfigError(str(exc)) from None
    return dataclasses.replace(built, source=source)


def site_timezone(settings: Config) -> dt.tzinfo:
    """`accounting.timezone` as a tzinfo; ConfigError naming the file and the field when unknown.

    Checked where local time is used (tables, months, doctor), not at load: the hooks never need it.
    """
    name = settings.accounting.timezone
    if name == "UTC":
        return dt.UTC
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        where = f"{settings.source}: " if settings.source else ""
        raise ConfigError(f"{where}accounting.timezone {name!r} is not a known time zone") from None
