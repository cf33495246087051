"""Load and validate jobcarbon's YAML configuration.

Errors name the file, the line, the dotted key and what is wrong, because the hooks run unattended
on hundreds of nodes and the only feedback an admin gets is one log line.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_PATH = Path("/etc/jobcarbon/config.yaml")
ENV_VAR = "JOBCARBON_CONFIG"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class Paths:
    """Roots of every file jobcarbon reads or writes; tests and demos point them at simulated trees."""

    sysfs: Path = Path("/sys")
    procfs: Path = Path("/proc")
    cgroupfs: Path = Path("/sys/fs/cgroup")
    spool: Path = Path("/var/spool/jobcarbon")
    outbox: Path = Path("/var/spool/jobcarbon/outbox")
    log_file: Path | None = Path("/var/log/jobcarbon/jobcarbon.log")


@dataclass(frozen=True)
class Sampler:
    interval_s: float = 10.0
    stop_timeout_s: float = 5.0
    journal_fsync: bool = True


@dataclass(frozen=True)
class Cgroup:
    version: Literal["auto", "v1", "v2"] = "auto"
    v1_prepend: str = "slurm"
    v2_slice: str = "system.slice"


@dataclass(frozen=True)
class Cpu:
    tdp_w: float | None = None
    idle_power_w: float | None = None
    idle_fraction_of_tdp: float = 0.3


@dataclass(frozen=True)
class Dram:
    w_per_gb: float = 0.3725


@dataclass(frozen=True)
class Nvml:
    enabled: bool = True
    library: Path | None = None
    slurm_index_order: Literal["minor_number", "pci_bus_id"] = "minor_number"


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
    source: Path | None = field(default=None, compare=False)


POSITIVE = {"interval_s", "stop_timeout_s", "tdp_w", "idle_power_w", "w_per_gb"}
FRACTIONS = {"idle_fraction_of_tdp"}
_SCALARS = yaml.constructor.SafeConstructor()


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The file to load: an explicit path, else $JOBCARBON_CONFIG, else the system default."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


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
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"):
        return Config(source=source)
    built = _build(Config, node, "", source)
    return dataclasses.replace(built, source=source)


def _fail(source: Path, node: yaml.Node, key: str, message: str) -> ConfigError:
    return ConfigError(f"{source}:{node.start_mark.line + 1}: {key or '<top>'}: {message}")


def _build(cls: type, node: yaml.Node, prefix: str, source: Path) -> Any:
    if not isinstance(node, yaml.MappingNode):
        raise _fail(source, node, prefix, "expected a mapping of keys")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in known:
            raise _fail(
                source, key_node, dotted, f"unknown key (expected one of: {', '.join(sorted(known))})"
            )
        values[key] = _convert(hints[key], value_node, dotted, source)
    return cls(**values)


def _convert(hint: Any, node: yaml.Node, key: str, source: Path) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, node, key, source)
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    scalar = _SCALARS.construct_object(node) if isinstance(node, yaml.ScalarNode) else None
    if isinstance(node, yaml.ScalarNode) and scalar is None and type(None) in options:
        return None
    for option in options:
        value = _coerce(option, scalar, node)
        if value is not None:
            return _check_range(value, node, key, source)
    raise _fail(source, node, key, f"expected {_describe(hint)}, got {scalar!r}")


def _coerce(option: Any, scalar: Any, node: yaml.Node) -> Any:
    """The scalar as `option`, or None when it does not fit."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    if typing.get_origin(option) is Literal:
        return scalar if scalar in typing.get_args(option) else None
    if option is bool:
        return scalar if isinstance(scalar, bool) else None
    if option is float:
        ok = isinstance(scalar, int | float) and not isinstance(scalar, bool)
        return float(scalar) if ok else None
    if option is str:
        return scalar if isinstance(scalar, str) and scalar else None
    if option is Path:
        return Path(scalar) if isinstance(scalar, str) and scalar.startswith("/") else None
    return None


def _check_range(value: Any, node: yaml.Node, key: str, source: Path) -> Any:
    leaf = key.rsplit(".", 1)[-1]
    if leaf in POSITIVE and not value > 0:
        raise _fail(source, node, key, f"must be greater than 0, got {value}")
    if leaf in FRACTIONS and not 0 <= value <= 1:
        raise _fail(source, node, key, f"must be between 0 and 1, got {value}")
    return value


def _describe(hint: Any) -> str:
    names = []
    for option in typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,):
        if typing.get_origin(option) is Literal:
            names.append("one of " + ", ".join(map(str, typing.get_args(option))))
        elif option is Path:
            names.append("an absolute path")
        elif option is type(None):
            names.append("null")
        else:
            names.append({bool: "true/false", float: "a number", str: "a non-empty string"}[option])
    return " or ".join(names)
