"""The accounting database: finished-job records, intensity series and versioned footprints.

Its SQL text lives in `schema`, the connections in the backend modules (SQLite or PostgreSQL). Writes run
in transactions that queue on the database's locks instead of failing half-way, and every record part is
stored exactly once, keyed by (cluster, job, restart, user, node, run), with its first footprint in the
same transaction: Slurm reuses job ids, and the run (slurm_plugin/runs.py) tells two jobs with one id
apart. On PostgreSQL the part goes through `writer_functions`, so that nodes may write as a role
with no table privileges.
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slurm_plugin import record as record_contract
from slurm_plugin import runs
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.storage import backend, dialect, migrations, packed_timeline, schema, writer_functions
from slurm_plugin.storage.errors import RecordRejected, StoreError, StoreUnavailable
from slurm_plugin.times import iso_z, utc

__all__ = ["RecordRejected", "Store", "StoreError", "StoreUnavailable"]

HEADLINE = schema.FOOTPRINT_HEADLINE  # the fields a footprint must have
# Added to a footprint's fields when read back, so they may not be fields themselves.
PROVENANCE = frozenset({"footprint_id", "part_id", "version", "current", "computed_at"})
ZLIB_LEVEL = 1  # three times faster than the default for a 13% larger blob: compression is on the hot path
Row = tuple[float, float, float | None, float | None, float | None]
Account = Callable[["NewPart"], dict[str, Any] | None]  # a new part's first footprint, if any
Fields = dict[str, Any]  # one statement's named parameters
First = tuple[Fields, list[Fields]]  # a first footprint's row and its months' rows


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} is a naive datetime; the store takes UTC-aware datetimes")
    return moment.timestamp()


def _moment(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else utc(epoch_s)


def _iso_epoch(text: str) -> float:
    return _epoch(datetime.fromisoformat(text))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_z(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Store:
    """One connection to the accounting database."""

    def __init__(self, db: backend.Backend):
        self.db = db

    @classmethod
    def open(
        cls, url: str, busy_timeout_s: float, create: bool = True, password_file: str | None = None
    ) -> Store:
        """Connect and bring the schema up to date.

        With `create=False` (delivery from compute nodes) a missing SQLite file is not created.
        """
        db = backend.connect(url, busy_timeout_s, create, password_file)
        try:
            with db.errors():
                version = migrations.upgrade(db)
            if version > migrations.latest():
                raise StoreError(f"{db.where}: schema version {version} is newer than this jobcarbon's")
        except BaseException:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (the storage modules beside the store write through it too)."""
        with self.db.errors():
            self.db.begin_write()
            try:
                yield
                self.db.commit()
            except BaseException:
                self.db.rollback()
                raise

    def _rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self.db.errors():
            return self.db.query(sql, params)

    def add_part(
        self, record: dict[str, Any], raw: bytes | None = None, account: Account | None = None
    ) -> int | None:
        """Store a validated record (`raw`: its file, kept for audit) with its first footprint, the fields
        `account` gives for it (as `save_footprint` takes them; None: no footprint yet); the new part id,
        None if the part was stored already."""
        return self.add_parts([(record, raw, account)])[0]

    def add_parts(
        self, items: Sequence[tuple[dict[str, Any], bytes | None, Account | None]]
    ) -> list[int | None]:
        """`add_part` for several records in one transaction: one commit, one fsync for them all (a node
        catching up on a backlog). All are stored or none."""
        return self.write_parts(self.prepare_parts(items))

    def prepare_parts(
        self, items: Sequence[tuple[dict[str, Any], bytes | None, Account | None]]
    ) -> PreparedParts:
        """What `write_parts` stores for `add_parts`' items: all the work done before taking a lock, the
        parts in key order, so that concurrent batches lock jobs in the same order and never deadlock.
        Beside `account`'s intensity, only SQLite reads here: a redelivery is skipped without the write
        lock and its footprint."""
        prepared = PreparedParts(len(items))
        for index in sorted(range(len(items)), key=lambda i: _record_key(items[i][0])):
            record, raw, account = items[index]
            job, part = _job_params(record), _part_params(record, raw or _json(record).encode())
            if self.db.name == dialect.SQLITE and self._stored(part_key(record)):
                continue  # a redelivery: no write lock, no footprint (PostgreSQL's function tells later)
            timeline = _timeline_params(record["timeline"])
            fields = account(NewPart(record, job, part, timeline["columns_f64"])) if account else None
            first = _footprint_params(fields) if fields is not None else None
            prepared.indexes.append(index)
            if self.db.name == dialect.POSTGRESQL:
                prepared.calls.append(_add_part_call(job, part, timeline, first))
            else:
                prepared.rows.append((job, part, timeline, first))
        return prepared

    def write_parts(self, prepared: PreparedParts) -> list[int | None]:
        """Store parts `prepare_parts` made, in one transaction: each item's new part id, None where the
        part was stored already."""
        found: list[int | None] = [None] * prepared.count
        if prepared.calls:
            part_ids = self._call_add_parts(prepared.calls)
        elif prepared.rows:
            with self.transaction():
                part_ids = [self._insert_part(*row) for row in prepared.rows]
        else:
            return found
        for index, part_id in zip(prepared.indexes, part_ids, strict=True):
            found[index] = part_id
        return found

    def _stored(self, key: dict[str, Any]) -> bool:
        with self.db.errors():  # the check also prepares FIND_PART for the transaction
            return self.db.execute(schema.FIND_PART, key).fetchone() is not None

    def stored_digest(self, record: dict[str, Any]) -> str | None:
        """The content digest (`record.digest`) of the stored part with the record's key; None if there
        is none. On PostgreSQL through a writer function, which tells a digest, never the part."""
        key = part_key(record)
        with self.db.errors():
            if self.db.name == dialect.POSTGRESQL:
                row = self.db.execute(writer_functions.CALL_PART_DIGEST, {"key": _json(key)}).fetchone()
            else:
                row = self.db.execute(schema.PART_DIGEST, key).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def stored_record(self, record: dict[str, Any]) -> bytes | None:
        """The stored file of the part with the record's key, for a quarantined conflict; None where it
        is not there or this connection may not read parts (PostgreSQL's writer role)."""
        if self.db.name == dialect.POSTGRESQL:
            return None  # nodes deliver as the writer role, which reads no part
        with self.db.errors():
            row = self.db.execute(schema.PART_RECORD, part_key(record)).fetchone()
        return None if row is None else zlib.decompress(row[0])

    def _call_add_parts(self, calls: list[Fields]) -> list[int | None]:
        """PostgreSQL: the parts through `writer_functions`, which a writer role may run: one statement,
        a field's values in one array."""
        arrays = {name: [call[name] for call in calls] for name in calls[0]}
        with self.db.errors():
            rows = self.db.execute(writer_functions.CALL_ADD_PARTS, arrays, binary=True).fetchall()
        return [None if part_id is None else int(part_id) for (part_id,) in rows]

    def _insert_part(self, job: Fields, part: Fields, timeline: Fields, first: First | None) -> int | None:
        key = {**job, "node": part["node"]}
        if self.db.execute(schema.FIND_PART, key).fetchone():
            return None  # already stored: checked again under the write lock, so exactly once
        part["job"] = self._job_id(key)
        self.db.execute(schema.DELETE_RUNNING, key)  # the finished record supersedes the snapshot
        timeline["part_id"] = part_id = int(self.db.execute(schema.INSERT_PART, part).fetchone()[0])
        self.db.execute(schema.INSERT_TIMELINE, timeline)
        if first is not None:
            self._insert_footprint(part_id, 1, *first)
        return part_id

    def _job_id(self, job: Fields) -> int:
        """The job's row id (`job` with the part's node): found by its run, or for a `seen:` run the job it
        joins (schema.FIND_SEEN_JOB), or inserted; its span widened to take in this part's."""
        seen = job["run"].startswith(runs.SEEN)
        row = (
            self.db.execute(schema.FIND_JOB, job).fetchone()
            or (seen and self.db.execute(schema.FIND_SEEN_JOB, job).fetchone())
            or self.db.execute(schema.INSERT_JOB, job).fetchone()
        )
        self.db.execute(schema.WIDEN_JOB, {**job, "job": row[0]})
        return int(row[0])

    def timeline(self, part_id: int) -> list[Row]:
        """The part's intervals as (t0, t1, cpu_j, dram_j, gpu_j), absolute UTC epoch seconds, by start."""
        return packed_timeline.decode(self._timeline_blob(part_id))

    def timeline_columns(self, part_id: int) -> list[array]:
        """The part's intervals as five float64 columns (t0, t1, cpu_j, dram_j, gpu_j), NaN for null."""
        return packed_timeline.columns(self._timeline_blob(part_id))

    def _timeline_blob(self, part_id: int) -> bytes:
        with self.db.errors():
            found = self.db.execute(schema.SELECT_TIMELINE, {"part_id": part_id}).fetchone()
        return found[0] if found else b""

    def part(self, part_id: int) -> dict[str, Any]:
        """Identity, partition, times (UTC datetimes) and energy of one part; KeyError if unknown."""
        rows = self._rows(schema.SELECT_PART, {"id": part_id})
        if not rows:
            raise KeyError(f"no job part {part_id}")
        found = rows[0]
        found["start"], found["end"] = _moment(found.pop("start_s")), _moment(found.pop("end_s"))
        found["gpus"] = json.loads(found.pop("gpus_json"))
        return found

    def record(self, part_id: int) -> dict[str, Any]:
        """The finished-job record as it was received, for audit; KeyError if unknown."""
        rows = self._rows(schema.SELECT_RECORD, {"id": part_id})
        if not rows:
            raise KeyError(f"no job part {part_id}")
        return json.loads(zlib.decompress(rows[0]["record_zlib"]))

    def parts(self, since: datetime | None = None) -> list[int]:
        """Ids of the parts that ended at or after `since` (all parts without it), oldest id first."""
        bound = float("-inf") if since is None else _epoch(since)
        return [r["id"] for r in self._rows(schema.SELECT_PARTS, {"since": bound})]

    def upsert_intensity(self, points: Iterable[IntensityPoint]) -> int:
        """Store points, replacing any with the same (zone, source, start): actuals replace forecasts."""
        params = [_intensity_params(point) for point in points]
        with self.transaction():
            self.db.executemany(schema.UPSERT_INTENSITY, params)
        return len(params)

    def upsert_running(self, record: dict[str, Any], raw: bytes, footprint: dict[str, Any] | None) -> bool:
        """Keep the newest snapshot of a running job's part; False once its finished record is stored."""
        job = _job_params(record)
        key = part_key(record)
        row = key | {
            "uid": job["uid"],
            "account": job["account"],
            "updated_s": job["end_s"],
            "record_zlib": zlib.compress(raw, ZLIB_LEVEL),
            "footprint_json": _json(footprint) if footprint is not None else None,
        }
        if self.db.name == dialect.POSTGRESQL:
            snapshot = _json({k: v for k, v in row.items() if k != "record_zlib"})
            with self.db.errors():
                params = {"snapshot": snapshot, "record_zlib": row["record_zlib"]}
                call = self.db.execute(writer_functions.CALL_UPSERT_RUNNING, params)
                return bool(call.fetchone()[0])
        with self.transaction():
            if self.db.execute(schema.FIND_PART, key).fetchone():
                return False
            self.db.execute(schema.UPSERT_RUNNING, row)
        return True

    def intensity(self, zone: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """The zone's points overlapping [start, end), by start time then source."""
        rows = self._rows(schema.SELECT_INTENSITY, {"zone": zone, "start": _epoch(start), "end": _epoch(end)})
        return [_intensity_point(row) for row in rows]

    def save_footprint(self, part_id: int, fields: dict[str, Any]) -> int:
        """Add the part's footprint as its new current version; return that version number.

        `fields["months"]` (from `accounting`), if present, goes to footprint_months, not the JSON."""
        params, months = _footprint_params(fields)
        with self.transaction():
            version = self.db.execute(schema.NEXT_VERSION, {"part_id": part_id}).fetchone()[0]
            self.db.execute(schema.RETIRE_FOOTPRINT_MONTHS, {"part_id": part_id})
            self.db.execute(schema.RETIRE_FOOTPRINTS, {"part_id": part_id})
            self._insert_footprint(part_id, version, params, months)
        return int(version)

    def _insert_footprint(
        self, part_id: int, version: int, params: dict[str, Any], months: list[dict[str, Any]]
    ) -> None:
        params = {**params, "part_id": part_id, "version": version}
        footprint_id = self.db.execute(schema.INSERT_FOOTPRINT, params).fetchone()[0]
        self._insert_months(footprint_id, months)

    def replace_footprint_months(self, footprint_id: int, months: list[dict[str, Any]]) -> None:
        """Store a footprint's monthly figures anew (filled by recompute; the footprint is unchanged)."""
        with self.transaction():
            self.db.execute(schema.DELETE_FOOTPRINT_MONTHS, {"footprint_id": footprint_id})
            self._insert_months(footprint_id, months)

    def _insert_months(self, footprint_id: int, months: list[dict[str, Any]]) -> None:
        rows = [_month_params(footprint_id, month) for month in months]
        if rows:
            self.db.executemany(schema.INSERT_FOOTPRINT_MONTH, rows)

    def footprint_months(self, footprint_id: int) -> list[dict[str, Any]]:
        """A footprint's figures per month, as `accounting` computed them, by month."""
        rows = self._rows(schema.SELECT_FOOTPRINT_MONTHS, {"footprint_id": footprint_id})
        for row in rows:
            row["gpu_hours_by_model"] = json.loads(row.pop("gpu_hours_json"))
            row["sources"] = json.loads(row.pop("sources_json"))
        return rows

    def footprint(self, part_id: int) -> dict[str, Any] | None:
        """The part's current footprint: its fields plus PROVENANCE; None if never computed."""
        rows = self._rows(schema.SELECT_CURRENT_FOOTPRINT, {"part_id": part_id})
        return _footprint(rows[0]) if rows else None

    def footprint_history(self, part_id: int) -> list[dict[str, Any]]:
        """Every footprint version of the part, oldest first, as `footprint` gives them."""
        rows = self._rows(schema.SELECT_FOOTPRINTS, {"part_id": part_id})
        return [_footprint(row) for row in rows]


def _footprint_params(fields: dict[str, Any]) -> First:
    """A footprint's row (less part and version) and its months; ValueError if fields are amiss."""
    months = fields.get("months") or []
    fields = {k: v for k, v in fields.items() if k != "months"}
    missing = [name for name in HEADLINE if name not in fields]
    if missing or PROVENANCE & fields.keys():
        raise ValueError(f"footprint lacks {missing} or has reserved {sorted(PROVENANCE & fields.keys())}")
    params = {name: fields[name] for name in HEADLINE}
    params.update(computed_at_s=time.time(), fields_json=_json(fields))
    return params, months


@dataclass
class PreparedParts:
    """Parts ready to store, of `count` items given: each one not skipped as its index among them and its
    parameters, as PostgreSQL's writer function takes them (`calls`) or SQLite's statements (`rows`)."""

    count: int
    indexes: list[int] = field(default_factory=list)
    calls: list[Fields] = field(default_factory=list)
    rows: list[tuple[Fields, Fields, Fields, First | None]] = field(default_factory=list)


@dataclass(frozen=True)
class NewPart:
    """A validated record about to be stored, read as a stored part is, for its first footprint: built
    from the very parameters and timeline blob the store writes."""

    record: dict[str, Any]
    job: dict[str, Any]
    params: dict[str, Any]
    timeline_blob: bytes

    def part(self) -> dict[str, Any]:
        """As `Store.part` gives a stored part, less its id."""
        found = {**self.job, **self.params}
        found["user"] = found.pop("user_name")
        found["start"], found["end"] = _moment(found.pop("start_s")), _moment(found.pop("end_s"))
        found["gpus"] = self.record["gpus"]
        return found

    def timeline_columns(self) -> list[array]:
        return packed_timeline.columns(self.timeline_blob)


def _add_part_call(job: Fields, part: Fields, timeline: Fields, first: First | None) -> Fields:
    """PostgreSQL: one part's fields as `writer_functions`' function takes them."""
    return {
        "job": _json(job),
        "part": _json({k: v for k, v in part.items() if k != "record_zlib"}),
        "record_zlib": part["record_zlib"],
        **timeline,
        "footprint": _json(first[0]) if first else None,
        "months": _json([_month_params(0, m) for m in first[1]]) if first else None,
    }


def _record_key(record: dict[str, Any]) -> tuple[str, int, int, int, str, str]:
    """The order parts are stored (and, on PostgreSQL, locked) in: a job's user before its nodes, so the
    job lock a `seen:` part takes (writer_functions) is always taken in the same order."""
    key = part_key(record)
    return (key["cluster"], key["job_id"], key["restart_count"], key["uid"], key["run"], key["node"])


def part_key(record: dict[str, Any]) -> dict[str, Any]:
    """The part's key as FIND_PART takes it: two records with the same key are the same part, delivered
    twice (the same content) or in conflict. A record of a release before runs has the legacy run."""
    key = {k: record[k] for k in ("cluster", "job_id", "restart_count", "uid", "node")}
    return {**key, "run": record.get("run", runs.LEGACY)}


def _job_params(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "cluster": record["cluster"],
        "job_id": record["job_id"],
        "restart_count": record["restart_count"],
        "run": record.get("run", runs.LEGACY),
        "user_name": record["user"],
        "uid": record["uid"],
        "gid": record["gid"],
        "account": record["account"],
        "partition": record["partition"],
        "start_s": _iso_epoch(record["start"]),
        "end_s": _iso_epoch(record["end"]),
        **_fact_params(record.get("slurm") or {}),
    }


def _fact_params(slurm: dict[str, Any]) -> dict[str, Any]:
    """The jobs row's columns from the record's `slurm` block (all null for a record without one)."""
    renamed = {"slurm_state": "state", "exit_signal": "signal"}
    params = {name: slurm.get(renamed.get(name, name)) for name, _ in schema.JOB_FACTS}
    params["submit_s"] = _iso_epoch(slurm["submit"]) if slurm.get("submit") else None
    return params


def _part_params(record: dict[str, Any], raw: bytes) -> dict[str, Any]:
    energy = record["energy"]
    params: dict[str, Any] = {
        "node": record["node"],
        "run": record.get("run", runs.LEGACY),
        "start_s": _iso_epoch(record["start"]),
        "end_s": _iso_epoch(record["end"]),
        "elapsed_s": record["elapsed_s"],
        "cpu_count": record["allocated_cpus"]["count"],
        "cpu_list": record["allocated_cpus"]["list"],
        "gpus_json": _json(record["gpus"]),
        "total_j": energy["total_joules"],
        "coverage_fraction": record["coverage"]["fraction"],
        "status": record["status"],
        "partial_reasons_json": _json(record["partial_reasons"]),
        "notes_json": _json(record["notes"]),
        "software_version": record["software"]["version"],
        "record_zlib": zlib.compress(raw, ZLIB_LEVEL),
        "content_sha256": record_contract.digest(record),
        "received_at_s": time.time(),
    }
    for component in ("cpu", "dram", "gpu"):
        summary = energy[component] or {}
        params[f"{component}_j"] = summary.get("joules")
        params[f"{component}_method"] = summary.get("method")
    params.update(_use_params(record.get("efficiency")))
    return params


def _use_params(use: dict[str, Any] | None) -> dict[str, Any]:
    """The part's waste (idle GPUs + idle cores) and GPU utilisation columns from its `efficiency`
    block; null where the record has none (no cgroup reading, or a record of an earlier release)."""
    if not use:
        return dict.fromkeys(name for name, _ in schema.PART_USE)
    idle_gpu_j = use.get("idle_gpu_j", 0.0)
    sampled = [g for g in (use.get("gpus") or {}).values() if g.get("sampled_s")]
    sampled_s = sum(g["sampled_s"] for g in sampled)
    util_s = sum(g["util_mean_pct"] * g["sampled_s"] for g in sampled)
    return {
        "idle_gpu_j": idle_gpu_j,
        "waste_j": round(idle_gpu_j + use["idle_cpu_j"], 3),
        "gpu_util_pct": round(util_s / sampled_s, 2) if sampled_s else None,
        "gpu_sampled_s": round(sampled_s, 3) if sampled_s else None,
    }


def _timeline_params(timeline: dict[str, Any]) -> dict[str, Any]:
    rows = timeline["rows"]
    blob = packed_timeline.encode(rows, _iso_epoch(timeline["origin"]))
    return {"intervals": len(rows), "columns_f64": blob}


def _intensity_params(point: IntensityPoint) -> dict[str, Any]:
    params: dict[str, Any] = {name: getattr(point, name) for name in ("zone", "source", "g_per_kwh", "scope")}
    params.update(start_s=_epoch(point.start), end_s=_epoch(point.end), fetched_at_s=None)
    params.update(estimated=int(point.estimated), forecast=int(point.forecast))
    if point.fetched_at is not None:
        params["fetched_at_s"] = _epoch(point.fetched_at)
    return params


def _intensity_point(row: dict[str, Any]) -> IntensityPoint:
    return IntensityPoint(
        zone=row["zone"],
        start=utc(row["start_s"]),
        end=utc(row["end_s"]),
        g_per_kwh=row["g_per_kwh"],
        source=row["source"],
        scope=row["scope"],
        estimated=bool(row["estimated"]),
        forecast=bool(row["forecast"]),
        fetched_at=_moment(row["fetched_at_s"]),
    )


def _month_params(footprint_id: int, month: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in month.items() if k not in ("gpu_hours_by_model", "sources")}
    params.update(
        footprint_id=footprint_id,
        gpu_hours_json=_json(month["gpu_hours_by_model"]),
        sources_json=_json(month["sources"]),
    )
    return params


def _footprint(row: dict[str, Any]) -> dict[str, Any]:
    provenance = {
        "footprint_id": row["id"],
        "part_id": row["part_id"],
        "version": row["version"],
        "current": bool(row["is_current"]),
        "computed_at": _moment(row["computed_at_s"]),
    }
    return {**json.loads(row["fields_json"]), **provenance}
