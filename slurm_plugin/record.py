"""The finished-job record's contract: one JSON document per job run per node, built here and checked
here (`parse`) before anything stores it.

Its shape is `record_schema.json` (documented in docs/record.md). The record is built only from the
journal's samples, so the sampler and the epilog's crash path produce the same document from the same
samples; the outbox it travels through is `slurm_plugin.outbox`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
import re
from collections.abc import Callable
from typing import Any, Protocol

from slurm_plugin import __version__, runs
from slurm_plugin.errors import JobcarbonError
from slurm_plugin.gpu_use import GpuUse
from slurm_plugin.methods import ORDER, Method

# Kept one release: a node agent of the previous release, still running across the upgrade, imports this
# module lazily when a job ends and writes the record through it.
from slurm_plugin.outbox import RUNNING_DIR as RUNNING_DIR
from slurm_plugin.outbox import write as write
from slurm_plugin.times import iso_z, utc

SCHEMA = "jobcarbon/job-node-record/1"
NAME = re.compile(r"[A-Za-z0-9_.@+\-]{1,128}")
METHODS = frozenset(Method)
MAX_INT = 2**63 - 1  # SQL BIGINT
NUMBERS = frozenset({int, float})  # JSON numbers; bool is an int subclass but not a number here
ROW_TYPES = NUMBERS | {type(None)}


class RecordError(JobcarbonError, ValueError):
    """A document is not a valid job record; the message names the field."""


class Samples(Protocol):
    """What a record is built from: a job's journal as the node reads it (`node.journal.Journal`)."""

    header: dict[str, Any]
    intervals: list[dict[str, Any]]
    notes: list[str]
    resumes: list[dict[str, Any]]
    torn: bool


def _iso(epoch_s: float) -> str:
    """A record's times are to the millisecond."""
    return iso_z(epoch_s, "milliseconds")


class _Component:
    """Running total of one component's joules, split by method."""

    def __init__(self) -> None:
        self.by_method: dict[str, float] = {}

    def add(self, part: list[Any] | None, fraction: float = 1.0) -> float | None:
        if not part:
            return None
        joules, method = float(part[0]) * fraction, str(part[1])
        self.by_method[method] = self.by_method.get(method, 0.0) + joules
        return joules

    def summary(self) -> dict[str, Any] | None:
        if not self.by_method:
            return None
        weakest = max(self.by_method, key=lambda m: ORDER.index(Method(m)))
        return {
            "joules": round(sum(self.by_method.values()), 3),
            "method": weakest,
            "by_method": {k: round(v, 3) for k, v in sorted(self.by_method.items())},
        }


def build(
    journal: Samples,
    end_s: float,
    partial_reasons: list[str],
    running: bool = False,
    slurm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record for a journal whose job ended at `end_s` (or, `running`, a snapshot up to then);
    `partial_reasons` mark lost sampling; `slurm` is what Slurm said about the job (node/jobfacts.py)."""
    header = journal.header
    start_s = float(header["start"])
    cpu, dram = _Component(), _Component()
    gpus: dict[str, _Component] = {}
    rows: list[list[float | None]] = []
    covered = 0.0
    cpus: list[int] = []
    use = _Use()
    gpu_use = GpuUse(header.get("gpu_idle_util_pct"))
    count = 0  # Slurm's count where no cpuset confines the job (ConstrainCores=no): no list then
    for entry in journal.intervals:
        cpus = entry.get("cpuset", cpus)
        count = int(entry.get("cpus") or count)
        raw0, raw1 = float(entry["t0"]), float(entry["t1"])
        t0, t1 = max(raw0, start_s), min(raw1, end_s)
        if t1 <= t0:
            continue
        # An interval reaching past the job's end keeps only the share of its energy inside the job.
        inside = (t1 - t0) / (raw1 - raw0)
        cpu_j, dram_j = cpu.add(entry.get("cpu"), inside), dram.add(entry.get("dram"), inside)
        gpu_j = None
        for uuid, part in (entry.get("gpu") or {}).items():
            joules = gpus.setdefault(uuid, _Component()).add(part, inside)
            gpu_j = (gpu_j or 0.0) + (joules or 0.0)
        if entry.get("cpu") is not None:
            covered += t1 - t0
        use.add(entry, t1 - t0, inside, cpu_j)
        gpu_use.add(entry, t1 - t0, inside)
        rows.append([round(t0 - start_s, 3), round(t1 - start_s, 3), *map(_j, (cpu_j, dram_j, gpu_j))])
    reasons = list(partial_reasons) + (["journal has a torn or corrupt line"] if journal.torn else [])
    reasons += [f"sampler restarted at {_iso(float(r['t']))}: {r.get('reason', '')}" for r in journal.resumes]
    document = _document(journal, start_s, end_s, covered, rows, cpu, dram, gpus, reasons, use)
    if gpu_use.gpus:
        document["timeline"]["gpu_use"] = gpu_use.timeline()
        if document["efficiency"] is not None:
            document["efficiency"].update(gpu_use.summary())
    if running:
        document["status"] = "running"
    document["allocated_cpus"] = {"count": len(cpus) or count, "list": _cpulist(cpus)}
    if slurm is not None:
        document["slurm"] = slurm
    return document


class _Use:
    """What the job did with what it held, from the cgroup readings of the journal (docs/record.md,
    `efficiency`): CPU time against allocated core-seconds, the memory peak, and the CPU energy of the
    cores it left idle."""

    def __init__(self) -> None:
        self.cpu_s = self.core_s = self.idle_cpu_j = 0.0
        self.mem_peak_b = 0

    def add(self, entry: dict[str, Any], seconds: float, inside: float, cpu_j: float | None) -> None:
        cores, used = entry.get("cpus"), entry.get("cpu_s")
        if not (type(cores) is int and cores > 0 and isinstance(used, int | float)) or seconds <= 0:
            return  # no cgroup reading for this interval
        used_s = min(used * inside, cores * seconds)
        self.cpu_s += used_s
        self.core_s += cores * seconds
        self.idle_cpu_j += (cpu_j or 0.0) * (1 - used_s / (cores * seconds))
        mem = entry.get("mem_b")
        self.mem_peak_b = max(self.mem_peak_b, mem if type(mem) is int and mem > 0 else 0)

    def summary(self) -> dict[str, Any] | None:
        if self.core_s <= 0:
            return None
        return {
            "cpu_time_s": round(self.cpu_s, 3),
            "core_s": round(self.core_s, 3),
            "cpu_efficiency": round(self.cpu_s / self.core_s, 4),
            "mem_peak_bytes": self.mem_peak_b,
            "idle_cpu_j": round(self.idle_cpu_j, 3),
        }


def _cpulist(cpus: list[int]) -> str:
    """Kernel cpu-list notation ("0-3,8") for a sorted list of CPU numbers."""
    ranges: list[str] = []
    for cpu in cpus:
        if ranges and cpu == int(ranges[-1].rsplit("-", 1)[-1]) + 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)


def _j(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _document(
    journal: Samples,
    start_s: float,
    end_s: float,
    covered: float,
    rows: list[list[float | None]],
    cpu: _Component,
    dram: _Component,
    gpus: dict[str, _Component],
    reasons: list[str],
    use: _Use,
) -> dict[str, Any]:
    header = journal.header
    job = header["job"]
    wall = max(end_s - start_s, 0.0)
    devices = {uuid: c.summary() for uuid, c in gpus.items() if c.summary()}
    energy: dict[str, Any] = {"cpu": cpu.summary(), "dram": dram.summary(), "gpu": _gpu_total(devices)}
    total = sum(part["joules"] for part in energy.values() if part)
    return {
        "schema": SCHEMA,
        "cluster": job["cluster"],
        "job_id": job["job_id"],
        "restart_count": job["restart_count"],
        **({"run": job["run"]} if job.get("run") else {}),  # a journal of an earlier release has none
        "node": job["node"],
        "user": job["user"],
        "uid": job["uid"],
        "gid": job["gid"],
        "account": job.get("account"),
        "partition": job.get("partition"),
        "start": _iso(start_s),
        "end": _iso(end_s),
        "elapsed_s": round(wall, 3),
        "gpus": header.get("gpus", []),
        "energy": {**energy, "total_joules": round(total, 3)},
        "efficiency": use.summary(),  # before the timeline: readers find it without parsing that
        "timeline": {
            "origin": _iso(start_s),
            "columns": ["start_s", "end_s", "cpu_j", "dram_j", "gpu_j"],
            "rows": rows,
        },
        "coverage": {
            "fraction": round(min(covered / wall, 1.0), 4) if wall > 0 else 0.0,
            "covered_s": round(covered, 3),
            "samples": len(rows),
        },
        "status": "partial" if reasons else "complete",
        "partial_reasons": reasons,
        "notes": journal.notes,
        "node_info": header.get("node_info", {}),
        "software": {"name": "jobcarbon", "version": __version__},
    }


def _gpu_total(devices: dict[str, Any]) -> dict[str, Any] | None:
    if not devices:
        return None
    merged = _Component()
    for summary in devices.values():
        for method, joules in summary["by_method"].items():
            merged.add([joules, method])
    total = merged.summary()
    return {**total, "devices": devices} if total else None


def digest(record: dict[str, Any]) -> str:
    """SHA-256 of the record's content, whatever its file's layout: two deliveries of one part with the
    same digest are one record delivered twice; a different digest is a conflict."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode(errors="surrogatepass")).hexdigest()


# --- checking a record read back -----------------------------------------------------------------


def json_object(data: bytes) -> dict[str, Any]:
    """`data` as a JSON object; RecordError otherwise (a record of any kind is one)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RecordError("record: must be a JSON object")
    return document


def parse(data: bytes, statuses: tuple[str, ...] = ("complete", "partial")) -> dict[str, Any]:
    """The record in `data`, checked for every field the store reads; RecordError names the first bad one.
    A finished record is complete or partial; `statuses=("running",)` reads a running job's snapshot."""
    record = json_object(data)
    for field, (valid, expected) in FIELDS.items():
        _check(record, field, valid, expected)
    _check(record, "status", statuses.__contains__, " or ".join(map(repr, statuses)))
    for component in ("cpu", "dram", "gpu"):
        if record["energy"][component] is not None:
            _check(record, f"energy.{component}.joules", _amount, "a number >= 0")
            _check(record, f"energy.{component}.method", METHODS.__contains__, f"one of {sorted(METHODS)}")
    _check_rows(record["timeline"]["rows"])
    if record.get("efficiency") is not None:  # records of earlier releases have none
        for field in ("cpu_time_s", "core_s", "idle_cpu_j", "mem_peak_bytes"):
            _check(record, f"efficiency.{field}", _amount, "a number >= 0")
        _check(record, "efficiency.cpu_efficiency", lambda v: _amount(v) and v <= 1, "a number from 0 to 1")
        if "idle_gpu_j" in record["efficiency"]:  # records of GPU jobs of this release on
            _check(record, "efficiency.idle_gpu_j", _amount, "a number >= 0")
    if "run" in record:  # records of earlier releases have none: the legacy run
        _check(record, "run", runs.valid, "a run identity (sluid:, start: or seen:)")
    if "slurm" in record:  # records of earlier releases have no `slurm` block
        for field, (valid, expected) in SLURM_FIELDS.items():
            _check(record, f"slurm.{field}", _or_null(valid), f"{expected} or null")
    return record


def _check(record: dict[str, Any], field: str, valid: Callable[[Any], bool], expected: str) -> None:
    value: Any = record
    for key in field.split("."):
        if not isinstance(value, dict):
            raise RecordError(f"{field}: missing (its parent is not an object)")
        if key not in value:
            raise RecordError(f"{field}: missing")
        value = value[key]
    if not _safe(valid, value):
        raise RecordError(f"{field}: must be {expected}, not {json.dumps(value)[:60]}")


def _check_rows(rows: list[Any]) -> None:
    """Every row is [start_s, end_s, cpu_j, dram_j, gpu_j]; rows are most of a record, so a valid one
    passes in a few C-level sweeps, and only a failing one is walked row by row to name the first bad one."""
    if not _rows_pass(rows):
        _find_bad_row(rows)


def _rows_pass(rows: list[Any]) -> bool:
    """True if every row is valid; False if one may not be (the row-by-row check then decides)."""
    if not rows:
        return True
    try:
        columns = list(zip(*rows, strict=True))
    except (TypeError, ValueError):  # a row that is not a list, or rows of different lengths
        return False
    if len(columns) != 5:
        return False
    starts, ends, *energies = columns
    if (set(map(type, starts)) | set(map(type, ends))) - NUMBERS:
        return False  # None, bool, str (a string or an object as a row iterates as strings)
    if not (min(starts) >= 0 and all(map(operator.le, starts, ends)) and max(ends) <= MAX_INT):
        return False  # NaN fails `le`, an infinite end the maximum
    joules = list(itertools.chain(*energies))
    if set(map(type, joules)) - ROW_TYPES:
        return False
    measured = list(filter(None, joules))  # without nulls; zeros pass anyway
    try:
        # all >= 0, so a sum <= MAX_INT bounds each; NaN and infinity fail the comparison
        return min(measured, default=0) >= 0 and sum(measured) <= MAX_INT
    except OverflowError:  # an integer beyond float range beside a float
        return False


def _find_bad_row(rows: list[Any]) -> None:
    for index, row in enumerate(rows):
        if type(row) is not list or len(row) != 5:
            raise RecordError(f"timeline.rows[{index}]: must be [start_s, end_s, cpu_j, dram_j, gpu_j]")
        t0, t1, *energies = row
        if not (type(t0) in NUMBERS and type(t1) in NUMBERS and 0 <= t0 <= t1 <= MAX_INT):
            raise RecordError(f"timeline.rows[{index}]: start_s and end_s must be numbers >= 0, start first")
        for value in energies:
            if value is not None and not (type(value) in NUMBERS and 0 <= value <= MAX_INT):
                raise RecordError(f"timeline.rows[{index}]: energies must be numbers >= 0 or null")


def _safe(valid: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(valid(value))
    except (TypeError, ValueError):
        return False


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_INT


def _amount(value: Any) -> bool:
    return type(value) in NUMBERS and 0 <= value <= MAX_INT  # NaN and infinity fail the comparisons


def _text(value: Any) -> bool:
    """Text both databases store as given: UTF-8-encodable (no lone surrogate) and without NUL."""
    return isinstance(value, str) and "\x00" not in value and value.encode() is not None


def _name(value: Any) -> bool:
    """A cluster or node name: it becomes part of the outbox file name."""
    return isinstance(value, str) and NAME.fullmatch(value) is not None


def _stamp(value: Any) -> bool:
    return isinstance(value, str) and value.endswith("Z") and utc(value) is not None


FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "schema": (lambda v: v == SCHEMA, repr(SCHEMA)),
    "cluster": (_name, "a name of 1-128 of [A-Za-z0-9_.@+-]"),
    "job_id": (_count, "an integer >= 0"),
    "restart_count": (_count, "an integer >= 0"),
    "node": (_name, "a name of 1-128 of [A-Za-z0-9_.@+-]"),
    "user": (_text, "a string"),
    "uid": (_count, "an integer >= 0"),
    "gid": (_count, "an integer >= 0"),
    "account": (lambda v: v is None or _text(v), "a string or null"),
    "partition": (lambda v: v is None or _text(v), "a string or null"),
    "start": (_stamp, "a UTC ISO 8601 time ending in Z"),
    "end": (_stamp, "a UTC ISO 8601 time ending in Z"),
    "elapsed_s": (_amount, "a number >= 0"),
    "allocated_cpus.count": (_count, "an integer >= 0"),
    "allocated_cpus.list": (_text, "a string"),
    "gpus": (lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v), "a list of objects"),
    "energy.cpu": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "energy.dram": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "energy.gpu": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "energy.total_joules": (_amount, "a number >= 0"),
    "timeline.origin": (_stamp, "a UTC ISO 8601 time ending in Z"),
    "timeline.rows": (lambda v: isinstance(v, list), "a list"),
    "coverage.fraction": (lambda v: _amount(v) and v <= 1, "a number from 0 to 1"),
    "partial_reasons": (
        lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "a string list",
    ),
    "notes": (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "a string list"),
    "software.version": (_text, "a string"),
}


def _or_null(valid: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or valid(value)


def _short(value: Any) -> bool:
    return _text(value) and len(value) <= 128


SLURM_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "job_name": (_short, "a string of at most 128 characters"),
    "state": (lambda v: isinstance(v, str) and re.fullmatch(r"[A-Z_]{1,32}", v) is not None, "a Slurm state"),
    "reason": (_short, "a string of at most 128 characters"),
    "exit_code": (lambda v: _count(v) and v <= 255, "an integer from 0 to 255"),
    "signal": (lambda v: _count(v) and v <= 255, "an integer from 0 to 255"),
    "time_limit_s": (_amount, "a number >= 0"),
    "req_cpus": (_count, "an integer >= 0"),
    "req_mem_mb": (_amount, "a number >= 0"),
    "req_gpus": (_count, "an integer >= 0"),
    "array_job_id": (_count, "an integer >= 0"),
    "array_task_id": (_count, "an integer >= 0"),
    "het_job_id": (_count, "an integer >= 0"),
    "het_job_offset": (_count, "an integer >= 0"),
    "qos": (_short, "a string of at most 128 characters"),
    "submit": (_stamp, "a UTC ISO 8601 time ending in Z"),
    "start": (_stamp, "a UTC ISO 8601 time ending in Z"),
    "end": (_stamp, "a UTC ISO 8601 time ending in Z"),
    "source": (lambda v: v in ("scontrol", "epilog", "none"), "'scontrol', 'epilog' or 'none'"),
}
"""The optional `slurm` block (node/jobfacts.py); each field may be null."""
