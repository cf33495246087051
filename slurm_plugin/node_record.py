"""The node record's contract: one node's ledger intervals (node/ledger.py), built by the agent and
checked here (`parse`) before anything stores it. Documented in docs/record.md, "Node records".

Each interval is stored once, keyed (cluster, node, t0_s), with its own content digest, so a record
delivered twice is a duplicate and an interval delivered with other content a conflict, as for job parts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from slurm_plugin import __version__
from slurm_plugin.methods import Method
from slurm_plugin.record import MAX_INT, NAME, RecordError, digest, json_object

SCHEMA = "jobcarbon/node-ledger/1"
COMPONENTS = ("cpu", "dram", "gpu")
METHODS = frozenset(Method)
_MISSING = object()  # a field not in the document (null is a value)


def build(
    cluster: str, node: str, boot_id: str | None, ncpus: int, intervals: list[dict[str, Any]]
) -> dict[str, Any]:
    """The record of `intervals` (`LedgerInterval.document`), oldest first."""
    return {
        "schema": SCHEMA,
        "cluster": cluster,
        "node": node,
        "boot_id": boot_id,
        "ncpus": ncpus,
        "intervals": intervals,
        "software": {"version": __version__},
    }


def filename(document: dict[str, Any]) -> str:
    """Named by its first interval's start, in ms: the agent's records of one node never share a name."""
    first = document["intervals"][0]["t0_s"]
    return f"{document['cluster']}_{document['node']}_{round(first * 1000)}.json"


def interval_digest(document: dict[str, Any], interval: dict[str, Any]) -> str:
    """SHA-256 of one interval's content with the node it belongs to."""
    return digest(
        {
            "cluster": document["cluster"],
            "node": document["node"],
            "boot_id": document["boot_id"],
            "ncpus": document["ncpus"],
            **interval,
        }
    )


def remainder_j(interval: dict[str, Any], component: str) -> float:
    """What the node measured of a component that no job was given; zero where nothing was measured."""
    measured = interval[f"{component}_j"]
    return 0.0 if measured is None else max(measured - interval[f"jobs_{component}_j"], 0.0)


# --- checking a record read back -----------------------------------------------------------------


def parse(data: bytes) -> dict[str, Any]:
    """The node record in `data`, checked for every field the store reads; RecordError names the first
    bad one, as `intervals[3].cpu_j`."""
    document = json_object(data)
    for field, (valid, expected) in FIELDS.items():
        _check(field, document.get(field, _MISSING), valid, expected)
    if not document["intervals"]:
        raise RecordError("intervals: must not be empty")
    for index, interval in enumerate(document["intervals"]):
        if not isinstance(interval, dict):
            raise RecordError(f"intervals[{index}]: must be an object")
        for field, (valid, expected) in INTERVAL_FIELDS.items():
            _check(f"intervals[{index}].{field}", interval.get(field, _MISSING), valid, expected)
        if interval["t1_s"] < interval["t0_s"]:
            raise RecordError(f"intervals[{index}].t1_s: must not be before t0_s")
    return document


def _check(field: str, value: Any, valid: Callable[[Any], bool], expected: str) -> None:
    if value is _MISSING:
        raise RecordError(f"{field}: missing")
    try:
        good = bool(valid(value))
    except (TypeError, ValueError):
        good = False
    if not good:
        raise RecordError(f"{field}: must be {expected}, not {json.dumps(value)[:60]}")


def _amount(value: Any) -> bool:
    return type(value) in (int, float) and 0 <= value <= MAX_INT


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_INT


def _or_null(valid: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or valid(value)


def _share(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and _count(value[0])
        and _count(value[1])
        and _amount(value[2])
        and _amount(value[3])
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) and "\x00" not in s for s in value)


FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "schema": (lambda v: v == SCHEMA, repr(SCHEMA)),
    "cluster": (
        lambda v: isinstance(v, str) and NAME.fullmatch(v) is not None,
        "a name of 1-128 of [A-Za-z0-9_.@+-]",
    ),
    "node": (
        lambda v: isinstance(v, str) and NAME.fullmatch(v) is not None,
        "a name of 1-128 of [A-Za-z0-9_.@+-]",
    ),
    "boot_id": (lambda v: v is None or (isinstance(v, str) and len(v) <= 64), "a string or null"),
    "ncpus": (_count, "an integer >= 0"),
    "intervals": (lambda v: isinstance(v, list), "a list"),
    "software": (
        lambda v: isinstance(v, dict) and isinstance(v.get("version"), str),
        "an object with a version",
    ),
}

INTERVAL_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "t0_s": (_amount, "a number >= 0"),
    "t1_s": (_amount, "a number >= 0"),
    **{f"{c}_j": (_or_null(_amount), "a number >= 0 or null") for c in COMPONENTS},
    **{
        f"{c}_method": (_or_null(METHODS.__contains__), f"one of {sorted(METHODS)} or null")
        for c in COMPONENTS
    },
    **{f"jobs_{c}_j": (_amount, "a number >= 0") for c in COMPONENTS},
    "jobs_core_s": (_amount, "a number >= 0"),
    "unmeasured_s": (_amount, "a number >= 0"),
    "job_shares": (
        lambda v: isinstance(v, list) and all(map(_share, v)),
        "a list of [job_id, restart_count, energy_j, core_s]",
    ),
    "notes": (_strings, "a string list"),
}
