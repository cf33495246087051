"""Build frozen dataclasses from a YAML node tree, with errors that name file:line, key and problem.

Supported field types: bool, int, float, str, absolute Path, date, Literal[...], unions with None,
nested dataclasses and tuple[Dataclass, ...]. Ranges come from field metadata (`POSITIVE`,
`NON_NEGATIVE`, `FRACTION`), so the schema is the dataclass itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

POSITIVE = {"range": "positive"}
FRACTION = {"range": "fraction"}
PERCENT = {"range": "percent"}
NON_NEGATIVE = {"range": "non-negative"}
NULL_TAG = "tag:yaml.org,2002:null"
_SCALARS = yaml.constructor.SafeConstructor()


class SchemaError(ValueError):
    """A value does not fit the schema; the message names file:line: key."""


def is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG)


def fail(source: Path, node: yaml.Node, key: str, message: str) -> SchemaError:
    return SchemaError(f"{source}:{node.start_mark.line + 1}: {key or '<top>'}: {message}")


def build(cls: type, node: yaml.Node, prefix: str, source: Path) -> Any:
    """An instance of dataclass `cls` from a mapping node; unknown and missing keys are errors."""
    if not isinstance(node, yaml.MappingNode):
        raise fail(source, node, prefix, "expected a mapping of keys")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            expected = ", ".join(sorted(fields))
            raise fail(source, key_node, dotted, f"unknown key (expected one of: {expected})")
        values[key] = _check_range(
            _convert(hints[key], value_node, dotted, source), fields[key], value_node, dotted, source
        )
    missing = [name for name, f in fields.items() if name not in values and _required(f)]
    if missing:
        raise fail(source, node, prefix, f"missing required key(s): {', '.join(missing)}")
    return cls(**values)


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _convert(hint: Any, node: yaml.Node, key: str, source: Path) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, node, key, source)
    if typing.get_origin(hint) is tuple:
        return _sequence(typing.get_args(hint)[0], node, key, source)
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if is_null(node) and type(None) in options:
        return None
    scalar = _SCALARS.construct_object(node) if isinstance(node, yaml.ScalarNode) else None
    for option in options:
        value = _coerce(option, scalar, node)
        if value is not None:
            return value
    shown = scalar if isinstance(node, yaml.ScalarNode) else f"a {getattr(node, 'id', 'node')}"
    raise fail(source, node, key, f"expected {_describe(hint)}, got {shown!r}")


def _sequence(item: Any, node: yaml.Node, key: str, source: Path) -> tuple[Any, ...]:
    if is_null(node):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise fail(source, node, key, "expected a list")
    return tuple(_convert(item, child, f"{key}[{i}]", source) for i, child in enumerate(node.value))


def _coerce(option: Any, scalar: Any, node: yaml.Node) -> Any:
    """The scalar as `option`, or None when it does not fit."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    if typing.get_origin(option) is Literal:
        return scalar if scalar in typing.get_args(option) else None
    if option is bool:
        return scalar if isinstance(scalar, bool) else None
    if option is int:
        return scalar if isinstance(scalar, int) and not isinstance(scalar, bool) else None
    if option is float:
        ok = isinstance(scalar, int | float) and not isinstance(scalar, bool)
        return float(scalar) if ok else None
    if option is str:
        return scalar if isinstance(scalar, str) and scalar else None
    if option is Path:
        return Path(scalar) if isinstance(scalar, str) and scalar.startswith("/") else None
    if option is dt.date:
        return scalar if isinstance(scalar, dt.date) and not isinstance(scalar, dt.datetime) else None
    return None


def _check_range(value: Any, field: dataclasses.Field, node: yaml.Node, key: str, source: Path) -> Any:
    kind = field.metadata.get("range")
    if value is None or kind is None:
        return value
    if kind == "positive" and not value > 0:
        raise fail(source, node, key, f"must be greater than 0, got {value}")
    if kind == "non-negative" and not value >= 0:
        raise fail(source, node, key, f"must be 0 or more, got {value}")
    if kind == "fraction" and not 0 <= value <= 1:
        raise fail(source, node, key, f"must be between 0 and 1, got {value}")
    if kind == "percent" and not 0 <= value <= 100:
        raise fail(source, node, key, f"must be between 0 and 100, got {value}")
    return value


def _describe(hint: Any) -> str:
    names = []
    for option in typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,):
        if typing.get_origin(option) is Literal:
            names.append("one of " + ", ".join(map(str, typing.get_args(option))))
        else:
            words = {
                bool: "true/false",
                int: "an integer",
                float: "a number",
                str: "a non-empty string",
                Path: "an absolute path",
                dt.date: "a date (YYYY-MM-DD)",
                type(None): "null",
            }
            names.append(words.get(option, str(option)))
    return " or ".join(names)
