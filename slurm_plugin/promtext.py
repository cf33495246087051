"""Prometheus' text exposition format, written directly (docs/monitoring.md says why not through
prometheus-client): a family's HELP and TYPE lines, its samples, and escaped label values."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


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
