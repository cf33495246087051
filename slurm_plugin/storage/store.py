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

from slurm_plugin import runs
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.storage import backend, dialect, migrations, packed_timeline, schema, writer_functions
from slurm_plugin.storage.errors import RecordRejected, StoreError, StoreUnavailable
from slurm_plugin.storage.record_rows import (
    ZLIB_LEVEL,
    compact_json,
    epoch,
    job_params,
    part_key,
    part_params,
    record_order,
    timeline_params,
)
from slurm_plugin.times import utc

__all__ = ["RecordRejected", "Store", "StoreError", "StoreUnavailable"]

HEADLINE = schema.FOOTPRINT_HEADLINE  # the fields a footprint must have
# Added to a footprint's fields when read back, so they may not be fields themselves.
PROVENANCE = frozenset({"footprint_id", "part_id", "version", "current", "computed_at"})
Row = tuple[float, float, float | None, float | None, float | None]
Account = Callable[["NewPart"], dict[str, Any] | None]  # a new part's first footprint, if any
Fields = dict[str, Any]  # one statement's named parameters
First = tuple[Fields, list[Fields]]  # a first footprint's row and its months' rows


def _moment(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else utc(epoch_s)


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
        for index in sorted(range(len(items)), key=lambda i: record_order(items[i][0])):
            record, raw, account = items[index]
            job, part = job_params(record), part_params(record, raw or compact_json(record).encode())
            if self.db.name == dialect.SQLITE and self._stored(part_key(record)):
                continue  # a redelivery: no write lock, no footprint (PostgreSQL's function tells later)
            timeline = timeline_params(record["timeline"])
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
                call = {"key": compact_json(key)}
                row = self.db.execute(writer_functions.CALL_PART_DIGEST, call).fetchone()
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
        bound = float("-inf") if since is None else epoch(since)
        return [r["id"] for r in self._rows(schema.SELECT_PARTS, {"since": bound})]

    def upsert_intensity(self, points: Iterable[IntensityPoint]) -> int:
        """Store points, replacing any with the same (zone, source, start): actuals replace forecasts."""
        params = [_intensity_params(point) for point in points]
        with self.transaction():
            self.db.executemany(schema.UPSERT_INTENSITY, params)
        return len(params)

    def upsert_running(self, record: dict[str, Any], raw: bytes, footprint: dict[str, Any] | None) -> bool:
        """Keep the newest snapshot of a running job's part; False once its finished record is stored."""
        job = job_params(record)
        key = part_key(record)
        row = key | {
            "uid": job["uid"],
            "account": job["account"],
            "updated_s": job["end_s"],
            "record_zlib": zlib.compress(raw, ZLIB_LEVEL),
            "footprint_json": compact_json(footprint) if footprint is not None else None,
        }
        if self.db.name == dialect.POSTGRESQL:
            snapshot = compact_json({k: v for k, v in row.items() if k != "record_zlib"})
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
        rows = self._rows(schema.SELECT_INTENSITY, {"zone": zone, "start": epoch(start), "end": epoch(end)})
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
    params.update(computed_at_s=time.time(), fields_json=compact_json(fields))
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
        "job": compact_json(job),
        "part": compact_json({k: v for k, v in part.items() if k != "record_zlib"}),
        "record_zlib": part["record_zlib"],
        **timeline,
        "footprint": compact_json(first[0]) if first else None,
        "months": compact_json([_month_params(0, m) for m in first[1]]) if first else None,
    }


def _intensity_params(point: IntensityPoint) -> dict[str, Any]:
    params: dict[str, Any] = {name: getattr(point, name) for name in ("zone", "source", "g_per_kwh", "scope")}
    params.update(start_s=epoch(point.start), end_s=epoch(point.end), fetched_at_s=None)
    params.update(estimated=int(point.estimated), forecast=int(point.forecast))
    if point.fetched_at is not None:
        params["fetched_at_s"] = epoch(point.fetched_at)
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
        gpu_hours_json=compact_json(month["gpu_hours_by_model"]),
        sources_json=compact_json(month["sources"]),
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
