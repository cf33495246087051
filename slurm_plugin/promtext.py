"""Prometheus' text exposition format, written directly (docs/monitoring.md says why not through
prometheus-client): a family's HELP and TYPE lines, its samples, and escaped label values."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from slurm_plugin.config_location import ConfigError


def parse_listen(text: str, setting: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) into a bind address; `setting` names it in the error."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{setting} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9877")
    return host.strip("[]"), int(port)


def escape(value: str) -> str:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**values: str) -> str:
    """`{name="value",...}` with the values escaped."""
    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in values.items()) + "}"


def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> Iterator[str]:
    """One metric family; each sample is its labels (or nothing) and the value, `{a="b"} 1.5`."""
    yield f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
    for sample in samples:
        yield f"{name}{sample}\n"
