"""Read-only queries behind `jobcarbon <jobid>` and `jobcarbon jobs`, through `backend.connect`'s
read-only mode (SQLite `mode=ro`, PostgreSQL read-only transactions).

Not through `storage.Store`: sqlite_utils imports numpy, which alone costs more start-up time than a
summary may take. The database is opened by the query service or by a user allowed to read it; every
read is filtered by `visibility`. A request can carry a deadline, enforced inside SQLite by a progress
handler and by PostgreSQL's statement_timeout.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slurm_plugin.errors import JobcarbonError
from slurm_plugin.query import job_list as job_list_document
from slurm_plugin.query import job_summary as job_summary_document
from slurm_plugin.query import visibility
from slurm_plugin.storage import backend, packed_timeline
from slurm_plugin.storage.backend import Backend
from slurm_plugin.storage.errors import DeadlinePassed, StoreError

STATES = ("completed",)  # jobs in the database have ended; "running" comes with live summaries
MAX_LIMIT = 10_000
MAX_VALUES = 50  # names in one filter
AROUND_S = 12 * 3600.0  # greenest/dirtiest: the intensity series within ±12 h of the job's midpoint
_ENERGY_KEY = b'"energy":'
_DECODER = json.JSONDecoder()
_RUNG_RANK = (
    "CASE f.rung "
    + " ".join(f"WHEN '{r}' THEN {i}" for i, r in enumerate(job_summary_document.RUNGS))
    + " END"
)


class QueryError(JobcarbonError):
    """A query failed in a way the user can act on; the message is one line."""


class DatabaseUnavailable(QueryError):
    """The database is missing, unreadable by the caller, or too busy."""


class JobNotFound(QueryError):
    """No such job, or not one the caller may see: the same answer, so a refusal reveals nothing."""

    def __init__(self, job_id: int):
        super().__init__(f"no job {job_id} in the jobcarbon database")
        self.job_id = job_id


class JobNotMeasured(QueryError):
    """The job is stored but nothing was measured (no cgroup found, sampler never ran, ...)."""


class Reader:
    """A read-only connection, `backend.connect`'s query mode; every failure is DatabaseUnavailable."""

    def __init__(self, db: Backend):
        self.db = db

    @classmethod
    def open(
        cls,
        url: str,
        busy_timeout_s: float = 5.0,
        deadline: float | None = None,
        password_file: str | None = None,
    ) -> Reader:
        """`deadline` (time.monotonic) stops any query that runs past it."""
        try:
            db = backend.connect(
                url, busy_timeout_s, password_file=password_file, read_only=True, deadline=deadline
            )
        except StoreError as exc:
            raise DatabaseUnavailable(str(exc)) from None
        return cls(db)

    def close(self) -> None:
        self.db.close()

    def rows(self, sql: str, params: dict[str, Any] | Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            with self.db.errors():
                return self.db.query(sql, params)
        except DeadlinePassed as exc:
            raise DatabaseUnavailable(str(exc)) from None
        except StoreError as exc:
            raise DatabaseUnavailable(f"{self.db.where}: {exc}") from None


# --- one job ----------------------------------------------------------------------------------------

_RUNS = """SELECT id, cluster, job_id, restart_count, user_name, uid, account, partition, start_s, end_s
FROM jobs WHERE job_id = ? ORDER BY end_s, id"""

_PARTS = """SELECT id, node, start_s, end_s, elapsed_s, cpu_count, gpus_json, cpu_j, cpu_method, dram_j,
    dram_method, gpu_j, gpu_method, total_j, coverage_fraction, status, partial_reasons_json, notes_json
FROM job_parts WHERE job = ? ORDER BY node"""

INTENSITY_AROUND = """SELECT start_s, end_s, g_per_kwh, source, forecast FROM intensity
WHERE zone = ? AND start_s < ? AND end_s > ? ORDER BY start_s, forecast, source"""


def job_summary(
    reader: Reader, scope: visibility.Scope, job_id: int, cluster: str | None = None
) -> dict[str, Any]:
    """The summary document (job_summary.build) of the latest run of a job the scope may see."""
    runs = [
        row
        for row in reader.rows(_RUNS, (job_id,))
        if (cluster is None or row["cluster"] == cluster)
        and visibility.may_see(scope, row["uid"], row["account"])
    ]
    if not runs:
        raise JobNotFound(job_id)
    job = dict(runs[-1])
    parts = [_part(reader, row) for row in reader.rows(_PARTS, (job["id"],))]
    if not parts:
        raise JobNotFound(job_id)
    if all(p["total_j"] == 0 and p["coverage_fraction"] == 0 for p in parts):
        why = next(iter(n for p in parts for n in p["notes"] + p["partial_reasons"]), "no samples")
        raise JobNotMeasured(f"job {job_id} ran but jobcarbon measured nothing: {why}")
    zone = next(
        (p["footprint"]["zone"] for p in parts if p["footprint"] and p["footprint"].get("zone")), None
    )
    middle = (job["start_s"] + job["end_s"]) / 2
    around = reader.rows(INTENSITY_AROUND, (zone, middle + AROUND_S, middle - AROUND_S)) if zone else []
    others = [(r["cluster"], r["restart_count"]) for r in runs[:-1]]
    return job_summary_document.build(job, parts, [dict(r) for r in around], others)


def _part(reader: Reader, row: Any) -> dict[str, Any]:
    part = dict(row)
    for name in ("gpus", "partial_reasons", "notes"):
        part[name] = json.loads(part.pop(f"{name}_json"))
    found = reader.rows(
        "SELECT fields_json FROM footprints WHERE part_id = ? AND is_current = 1", (row["id"],)
    )
    part["footprint"] = json.loads(found[0]["fields_json"]) if found else None
    timeline = reader.rows("SELECT columns_f64 FROM timeline WHERE part_id = ?", (row["id"],))
    part["timeline"] = packed_timeline.decode(timeline[0]["columns_f64"]) if timeline else []
    part["gpu_devices"] = _gpu_devices(reader, row["id"]) if part["gpus"] or part["gpu_j"] else {}
    return part


def _gpu_devices(reader: Reader, part_id: int) -> dict[str, Any]:
    """Per-GPU energy is only in the stored record (energy.gpu.devices); read it when there are GPUs."""
    found = reader.rows("SELECT record_zlib FROM job_parts WHERE id = ?", (part_id,))
    energy = _record_energy(found[0]["record_zlib"]) if found else None
    return ((energy or {}).get("gpu") or {}).get("devices") or {}


def _record_energy(blob: bytes) -> dict[str, Any] | None:
    """The record's `energy` object, inflating and parsing only as far as it.

    A record's timeline follows its energy (record.py writes it so, and sorted keys put "energy"
    before "timeline"), and a day at 10 s is most of a 600 kB document: parsing it all cost 15 ms a
    node. Any surprise (key not found, object not whole) falls back to parsing everything.
    """
    inflater, data, pending = zlib.decompressobj(), b"", blob
    try:
        while pending:
            data += inflater.decompress(pending, 1 << 16)
            pending = inflater.unconsumed_tail
            at = data.find(_ENERGY_KEY)
            if at < 0:
                continue
            try:
                value, _ = _DECODER.raw_decode(
                    data[at + len(_ENERGY_KEY) :].decode("utf-8", "replace").lstrip()
                )
            except ValueError:
                continue  # not all of it inflated yet
            if isinstance(value, dict):
                return value
        whole = json.loads(data + inflater.flush())
    except (zlib.error, ValueError):
        return None
    return whole.get("energy") if isinstance(whole, dict) else None


# --- many jobs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    """`jobcarbon jobs` filters; empty tuples mean "any". `mine`: only the viewer's own jobs."""

    since_s: float
    until_s: float
    users: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    mine: bool = True
    limit: int = 100

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> JobFilter:
        """Validate a service request's fields; QueryError on anything unexpected."""
        since, until = request.get("since_s"), request.get("until_s")
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (since, until)):
            raise QueryError("since_s and until_s must be numbers (UTC epoch seconds)")
        names = {
            key: _names(request.get(key, []), key) for key in ("users", "accounts", "partitions", "states")
        }
        limit, mine = request.get("limit", 100), request.get("mine", True)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit must be an integer from 0 to {MAX_LIMIT}")
        if not isinstance(mine, bool):
            raise QueryError("mine must be true or false")
        return cls(float(since), float(until), mine=mine, limit=limit, **names)

    def to_request(self) -> dict[str, Any]:
        return {
            "since_s": self.since_s,
            "until_s": self.until_s,
            "users": list(self.users),
            "accounts": list(self.accounts),
            "partitions": list(self.partitions),
            "states": list(self.states),
            "mine": self.mine,
            "limit": self.limit,
        }


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_VALUES:
        raise QueryError(f"{key} must be a list of at most {MAX_VALUES} names")
    if not all(isinstance(v, str) and 0 < len(v) <= 256 for v in value):
        raise QueryError(f"{key} must hold non-empty names")
    return tuple(value)


# The page of jobs is chosen first, on the jobs table alone (an index on the filter and end_s, read
# backwards, stops after :limit rows); only those jobs are then joined with their parts and footprints.
# Grouping the whole join instead made SQLite scan every job in rowid order.
_LIST = f"""WITH picked AS MATERIALIZED (
    SELECT j.id, j.cluster, j.job_id, j.restart_count, j.user_name, j.uid, j.account, j.partition,
        j.start_s, j.end_s
    FROM jobs j WHERE {{where}} ORDER BY j.end_s DESC, j.id DESC LIMIT :limit)
SELECT j.cluster, j.job_id, j.restart_count, j.user_name, j.uid, j.account, j.partition,
    j.start_s, j.end_s, COUNT(p.id) AS nodes, SUM(p.total_j) AS energy_j,
    SUM(p.coverage_fraction * p.elapsed_s) AS covered_s, SUM(p.elapsed_s) AS parts_s,
    MAX(CASE WHEN p.status = 'partial' THEN 1 ELSE 0 END) AS partial, SUM(f.it_energy_j) AS it_energy_j,
    SUM(f.facility_energy_j) AS facility_energy_j, SUM(f.co2e_g) AS co2e_g, COUNT(f.id) AS footprints,
    MAX({_RUNG_RANK}) AS rung_rank
FROM picked j JOIN job_parts p ON p.job = j.id
LEFT JOIN footprints f ON f.part_id = p.id AND f.is_current = 1
GROUP BY j.id, j.cluster, j.job_id, j.restart_count, j.user_name, j.uid, j.account, j.partition, j.start_s,
    j.end_s
ORDER BY j.end_s DESC, j.id DESC"""  # noqa: S608 - constant text, values bound

_TOTALS = """SELECT COUNT(DISTINCT j.id) AS jobs, COALESCE(SUM(p.total_j), 0) AS energy_j,
    COALESCE(SUM(f.facility_energy_j), 0) AS facility_energy_j, COALESCE(SUM(f.co2e_g), 0) AS co2e_g
FROM jobs j JOIN job_parts p ON p.job = j.id
LEFT JOIN footprints f ON f.part_id = p.id AND f.is_current = 1
WHERE {where}"""


def job_list(reader: Reader, scope: visibility.Scope, wanted: JobFilter) -> dict[str, Any]:
    """The jobs matching `wanted` that the scope may see, newest first, with totals over all matches."""
    where, params = _where(scope, wanted)
    params["limit"] = wanted.limit if wanted.limit > 0 else MAX_LIMIT
    rows = [dict(r) for r in reader.rows(_LIST.format(where=where), params)]
    totals = dict(reader.rows(_TOTALS.format(where=where), params)[0])
    return job_list_document.build(rows, totals, wanted.to_request())


def _where(scope: visibility.Scope, wanted: JobFilter) -> tuple[str, dict[str, Any]]:
    condition, params = visibility.sql_filter(scope)
    clauses = [condition, "j.end_s >= :since", "j.start_s <= :until"]
    params.update(since=wanted.since_s, until=wanted.until_s)
    if wanted.mine:
        clauses.append("j.uid = :mine")
        params["mine"] = scope.uid
    for column, values in (
        ("user_name", wanted.users),
        ("account", wanted.accounts),
        ("partition", wanted.partitions),
    ):
        if values:
            clauses.append(f"j.{column} IN ({_placeholders(column, values, params)})")
    if wanted.states and not set(wanted.states) & set(STATES):
        clauses.append("0 = 1")  # every stored job has ended: a filter on other states matches none
    return " AND ".join(clauses), params


def _placeholders(prefix: str, values: Iterable[str], params: dict[str, Any]) -> str:
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return ", ".join(names)
