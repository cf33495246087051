"""Read-only queries behind `jobcarbon <jobid>`, `jobcarbon jobs` and the query service: the SQL, and
rows or plain data back; `query/` builds the documents from them.

Through `backend.connect`'s read-only mode (SQLite `mode=ro`, PostgreSQL read-only transactions), not
through `storage.Store`: sqlite_utils imports numpy, which alone costs more start-up time than a
summary may take. A request can carry a deadline, enforced inside SQLite by a progress handler and by
PostgreSQL's statement_timeout.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slurm_plugin.errors import JobcarbonError
from slurm_plugin.storage import backend, dialect, packed_timeline, schema
from slurm_plugin.storage.backend import Backend
from slurm_plugin.storage.errors import DeadlinePassed, StoreError

_ENERGY_KEY = b'"energy":'
_EFFICIENCY_KEY = b'"efficiency":'
_TIMELINE_KEY = b'"timeline":'
_DECODER = json.JSONDecoder()


class QueryError(JobcarbonError):
    """A query failed in a way the user can act on; the message is one line."""


class DatabaseUnavailable(QueryError):
    """The database is missing, unreadable by the caller, or too busy."""

    prefix = "database: "


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

_FACTS = ", ".join(name for name, _ in schema.JOB_FACTS)
_RUNS = f"""SELECT id, cluster, job_id, restart_count, run, user_name, uid, account, partition, start_s,
    end_s, {_FACTS}
FROM jobs WHERE job_id = ? ORDER BY end_s, id"""  # noqa: S608 - schema's constant column names

_PARTS = """SELECT id, node, start_s, end_s, elapsed_s, cpu_count, gpus_json, cpu_j, cpu_method, dram_j,
    dram_method, gpu_j, gpu_method, total_j, coverage_fraction, status, partial_reasons_json, notes_json
FROM job_parts WHERE job = ? ORDER BY node"""

_INTENSITY = """SELECT start_s, end_s, g_per_kwh, source, forecast FROM intensity
WHERE zone = ? AND start_s < ? AND end_s > ? ORDER BY start_s, forecast, source"""

_RUNNING = """SELECT cluster, job_id, restart_count, run, node, uid, account, updated_s, record_zlib,
    footprint_json FROM running_parts WHERE job_id = ? ORDER BY cluster, restart_count, node"""


# A part's waste in CO2e: its share of the part's IT energy, at the part's footprint (PUE included), as
# `jobcarbon <jobid>` computes it (query/job_summary.py).
WASTE_CO2E = "CASE WHEN f.it_energy_j > 0 THEN f.co2e_g * p.waste_j / f.it_energy_j END"
# What a run's parts used and wasted, summed (query/job_list.run_use reads them): a listed job's and an
# array task's alike.
_USE = (
    "SUM(p.waste_j) AS waste_j, COUNT(p.waste_j) AS waste_parts, "
    f"SUM({WASTE_CO2E}) AS waste_co2e_g, SUM(p.gpu_util_pct * p.gpu_sampled_s) AS gpu_util_s, "
    "SUM(p.gpu_sampled_s) AS gpu_sampled_s"
)

_MEMBER = """SELECT job_id, cluster, uid, account FROM jobs WHERE {group} = ? AND {member} = ?
ORDER BY end_s, id"""
_GROUPS = {"_": ("array_job_id", "array_task_id"), "+": ("het_job_id", "het_job_offset")}

_ARRAY = f"""SELECT j.cluster, j.job_id, j.restart_count, j.array_task_id, j.user_name, j.uid, j.account,
    j.job_name, j.slurm_state, j.exit_code, j.exit_signal, j.start_s, j.end_s, COUNT(p.id) AS nodes,
    SUM(p.total_j) AS energy_j, SUM(f.facility_energy_j) AS facility_energy_j, SUM(f.co2e_g) AS co2e_g,
    COUNT(f.id) AS footprints, {_USE}
FROM jobs j JOIN job_parts p ON p.job = j.id
LEFT JOIN footprints f ON f.part_id = p.id AND f.is_current = 1
WHERE j.array_job_id = ?
GROUP BY j.id, j.cluster, j.job_id, j.restart_count, j.array_task_id, j.user_name, j.uid, j.account,
    j.job_name, j.slurm_state, j.exit_code, j.exit_signal, j.start_s, j.end_s
ORDER BY j.cluster, j.array_task_id, j.restart_count"""  # noqa: S608 - constant text


def member_runs(reader: Reader, separator: str, group_id: int, index: int) -> list[dict[str, Any]]:
    """The stored runs of array task `group_id`_`index` ("_") or het component `group_id`+`index` ("+"):
    job_id (the raw id slurmd gave the prolog), cluster, uid, account; the caller applies visibility."""
    group, member = _GROUPS[separator]
    return reader.rows(_MEMBER.format(group=group, member=member), (group_id, index))


def array_tasks(reader: Reader, array_job_id: int) -> list[dict[str, Any]]:
    """Every stored run of an array's tasks with its energy and footprint sums, by cluster and task."""
    return reader.rows(_ARRAY, (array_job_id,))


def job_runs(reader: Reader, job_id: int) -> list[dict[str, Any]]:
    """Every stored run of a Slurm job id (requeues, and other clusters sharing the database), the
    latest last; the caller applies visibility."""
    return reader.rows(_RUNS, (job_id,))


def job_parts(reader: Reader, run_id: int) -> list[dict[str, Any]]:
    """A run's parts (one a node) by node name, decoded: `gpus`, `partial_reasons`, `notes`, the current
    `footprint` (or None), the `timeline` rows, the per-GPU energy `gpu_devices` and the joules per
    component and method `energy_by_method`."""
    return [_part(reader, row) for row in reader.rows(_PARTS, (run_id,))]


def running_parts(reader: Reader, job_id: int) -> list[dict[str, Any]]:
    """The newest snapshot rows of a running job id, by cluster, run and node; records still compressed."""
    return reader.rows(_RUNNING, (job_id,))


def intensity_between(reader: Reader, zone: str, start_s: float, end_s: float) -> list[dict[str, Any]]:
    """A zone's stored intensity slots overlapping [start_s, end_s): start_s, end_s, g_per_kwh, source
    and forecast, in time order (actuals before forecasts)."""
    return reader.rows(_INTENSITY, (zone, end_s, start_s))


def _part(reader: Reader, row: dict[str, Any]) -> dict[str, Any]:
    part = dict(row)
    for name in ("gpus", "partial_reasons", "notes"):
        part[name] = json.loads(part.pop(f"{name}_json"))
    found = reader.rows(
        "SELECT fields_json FROM footprints WHERE part_id = ? AND is_current = 1", (row["id"],)
    )
    part["footprint"] = json.loads(found[0]["fields_json"]) if found else None
    timeline = reader.rows("SELECT columns_f64 FROM timeline WHERE part_id = ?", (row["id"],))
    part["timeline"] = packed_timeline.decode(timeline[0]["columns_f64"]) if timeline else []
    found = reader.rows("SELECT record_zlib FROM job_parts WHERE id = ?", (row["id"],))
    blob = found[0]["record_zlib"] if found else b""
    energy = _record_object(blob, _ENERGY_KEY) if blob else None
    part["gpu_devices"] = ((energy or {}).get("gpu") or {}).get("devices") or {}
    part["energy_by_method"] = by_method(energy or {})
    part["efficiency"] = _record_object(blob, _EFFICIENCY_KEY, _TIMELINE_KEY) if blob else None
    return part


def by_method(energy: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A record's `energy` object's joules per component and method (docs/record.md, `by_method`)."""
    return {
        component: dict(summary.get("by_method") or {})
        for component in ("cpu", "dram", "gpu")
        if isinstance(summary := energy.get(component), dict)
    }


def _record_object(blob: bytes, key: bytes, absent_after: bytes | None = None) -> dict[str, Any] | None:
    """The record's object under `key` (per-GPU energy, efficiency: only in the stored record),
    inflating and parsing only as far as it.

    A record's timeline follows its energy and efficiency (record.py writes it so, and sorted keys put
    both before "timeline"), and a day at 10 s is most of a 600 kB document: parsing it all cost 15 ms
    a node. A key not found before `absent_after` is taken as absent (efficiency, which records of earlier
    releases lack, comes before the timeline); any other surprise (key not found, object not whole) falls
    back to parsing everything.
    """
    inflater, data, pending = zlib.decompressobj(), b"", blob
    try:
        while pending:
            data += inflater.decompress(pending, 1 << 16)
            pending = inflater.unconsumed_tail
            at = data.find(key)
            if at < 0:
                if absent_after is not None and absent_after in data:
                    return None
                continue
            try:
                value, _ = _DECODER.raw_decode(data[at + len(key) :].decode("utf-8", "replace").lstrip())
            except ValueError:
                continue  # not all of it inflated yet
            if isinstance(value, dict) or value is None:
                return value
        whole = json.loads(data + inflater.flush())
    except (zlib.error, ValueError):
        return None
    found = whole.get(key.decode().strip('":')) if isinstance(whole, dict) else None
    return found if isinstance(found, dict) else None


# --- many jobs --------------------------------------------------------------------------------------


def visible_filter(everything: bool, uid: int, accounts: Iterable[str], alias: str = "j") -> tuple[str, dict]:
    """A WHERE condition on the jobs table (as `alias`) for a viewer who sees every job, or the jobs of
    `uid` and of `accounts`: visibility.may_see in SQL."""
    if everything:
        return "1 = 1", {}
    params: dict[str, Any] = {"vis_uid": uid}
    names = [f":vis_acct{i}" for i, _ in enumerate(accounts)]
    params.update({name[1:]: account for name, account in zip(names, sorted(accounts), strict=True)})
    if not names:
        return f"{alias}.uid = :vis_uid", params
    return f"({alias}.uid = :vis_uid OR {alias}.account IN ({', '.join(names)}))", params


@dataclass(frozen=True)
class JobSelection:
    """The stored jobs a listing covers, in plain values; empty tuples mean "any"."""

    since_s: float  # jobs running at or after
    until_s: float  # ... and at or before
    visible: tuple[str, dict[str, Any]]  # visible_filter's condition and parameters
    limit: int  # the newest this many; the totals cover every match
    rungs: Sequence[str]  # intensity rungs, best first: `rung_rank` indexes this
    owner_uid: int | None = None  # only this uid's jobs
    users: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    slurm_states: tuple[str, ...] = ()  # Slurm states; COMPLETED also matches jobs whose state is unknown
    ended: bool = True  # False: the filter admits no ended job, and the database stores only those


# The page of jobs is chosen first, on the jobs table alone (an index on the filter and end_s, read
# backwards, stops after :limit rows); only those jobs are then joined with their parts and footprints.
# Grouping the whole join instead made SQLite scan every job in rowid order.
_LIST = """WITH picked AS MATERIALIZED (
    SELECT j.id, j.cluster, j.job_id, j.restart_count, j.run, j.user_name, j.uid, j.account, j.partition,
        j.start_s, j.end_s, j.job_name, j.slurm_state, j.exit_code, j.exit_signal
    FROM jobs j WHERE {where} ORDER BY j.end_s DESC, j.id DESC LIMIT :limit)
SELECT j.cluster, j.job_id, j.restart_count, j.run, j.user_name, j.uid, j.account, j.partition,
    j.start_s, j.end_s, j.job_name, j.slurm_state, j.exit_code, j.exit_signal, COUNT(p.id) AS nodes,
    SUM(p.total_j) AS energy_j,
    SUM(p.coverage_fraction * p.elapsed_s) AS covered_s, SUM(p.elapsed_s) AS parts_s,
    MAX(CASE WHEN p.status = 'partial' THEN 1 ELSE 0 END) AS partial, SUM(f.it_energy_j) AS it_energy_j,
    SUM(f.facility_energy_j) AS facility_energy_j, SUM(f.co2e_g) AS co2e_g, COUNT(f.id) AS footprints,
    MAX({rung_rank}) AS rung_rank, {use}
FROM picked j JOIN job_parts p ON p.job = j.id
LEFT JOIN footprints f ON f.part_id = p.id AND f.is_current = 1
GROUP BY j.id, j.cluster, j.job_id, j.restart_count, j.run, j.user_name, j.uid, j.account, j.partition,
    j.start_s, j.end_s, j.job_name, j.slurm_state, j.exit_code, j.exit_signal
ORDER BY j.end_s DESC, j.id DESC"""


_TOTALS = """SELECT COUNT(DISTINCT j.id) AS jobs, COALESCE(SUM(p.total_j), 0) AS energy_j,
    COALESCE(SUM(f.facility_energy_j), 0) AS facility_energy_j, COALESCE(SUM(f.co2e_g), 0) AS co2e_g,
    COALESCE(SUM(p.waste_j), 0) AS waste_j, COALESCE(SUM({waste_co2e}), 0) AS waste_co2e_g
FROM jobs j JOIN job_parts p ON p.job = j.id
LEFT JOIN footprints f ON f.part_id = p.id AND f.is_current = 1
WHERE {where}"""


def job_listing(reader: Reader, wanted: JobSelection) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The newest matching jobs with their sums (`rung_rank`: the worst rung of their footprints), and
    the totals over every match: jobs, energy_j, facility_energy_j, co2e_g."""
    where, params = _where(wanted)
    rank = " ".join(f"WHEN :rung{i} THEN {i}" for i in range(len(wanted.rungs)))
    params.update({f"rung{i}": rung for i, rung in enumerate(wanted.rungs)}, limit=wanted.limit)
    rung_rank = f"CASE f.rung {rank} END"
    rows = reader.rows(_LIST.format(where=where, rung_rank=rung_rank, use=_USE), params)
    totals = reader.rows(_TOTALS.format(where=where, waste_co2e=WASTE_CO2E), params)[0]
    return rows, totals


def _where(wanted: JobSelection) -> tuple[str, dict[str, Any]]:
    condition, visible_params = wanted.visible
    clauses = [condition, "j.end_s >= :since", "j.start_s <= :until"]
    params = {**visible_params, "since": wanted.since_s, "until": wanted.until_s}
    if wanted.owner_uid is not None:
        clauses.append("j.uid = :mine")
        params["mine"] = wanted.owner_uid
    for column, values in (
        ("user_name", wanted.users),
        ("account", wanted.accounts),
        ("partition", wanted.partitions),
    ):
        if values:
            clauses.append(f"j.{column} IN ({dialect.placeholders(column, values, params)})")
    if wanted.slurm_states:
        known = f"j.slurm_state IN ({dialect.placeholders('state', wanted.slurm_states, params)})"
        unknown = " OR j.slurm_state IS NULL" if "COMPLETED" in wanted.slurm_states else ""
        clauses.append(f"({known}{unknown})")
    if not wanted.ended:
        clauses.append("0 = 1")
    return " AND ".join(clauses), params
