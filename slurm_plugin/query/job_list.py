"""`jobcarbon jobs`: recent jobs as a document (`jobcarbon/job-list/1`), a table like sacct's, or CSV.

`job_list` reads the jobs a filter and a viewer's scope select (`storage.readonly.job_listing`); `build`
shapes those rows, purely; `table` and `csv_text` render the document.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slurm_plugin import figures
from slurm_plugin.accounting.footprint import J_PER_KWH
from slurm_plugin.query import visibility
from slurm_plugin.query.job_summary import QUALITY, RUNGS
from slurm_plugin.query.job_summary_text import duration, local, printable
from slurm_plugin.storage import readonly
from slurm_plugin.storage.readonly import QueryError, Reader
from slurm_plugin.times import iso_z

SCHEMA = "jobcarbon/job-list/1"
STATES = ("completed",)  # jobs in the database have ended; "running" comes with live summaries
# `-s` takes Slurm's states too (the record's `slurm.state`); "completed" is also Slurm's COMPLETED, which
# matches the jobs whose state Slurm never told (records of earlier releases), as they were listed before.
SLURM_STATES = (
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
    "DEADLINE",
)  # fmt: skip
# sacct's short state names (sacct(1), "JOB STATE CODES")
SHORT_STATES = {
    "CD": "COMPLETED", "F": "FAILED", "CA": "CANCELLED", "TO": "TIMEOUT", "OOM": "OUT_OF_MEMORY",
    "NF": "NODE_FAIL", "PR": "PREEMPTED", "BF": "BOOT_FAIL", "DL": "DEADLINE", "R": "RUNNING",
}  # fmt: skip


def state_name(text: str) -> str:
    """A `-s` state as the filter holds it (lower case): Slurm's name or sacct's short one, or "running"."""
    name = SHORT_STATES.get(text.upper(), text.upper())
    if name not in (*SLURM_STATES, "RUNNING"):
        known = ", ".join(s.lower() for s in (*SLURM_STATES, "RUNNING"))
        raise QueryError(f"unknown job state {text[:40]!r} (one of {known}, or sacct's short names)")
    return name.lower()


MAX_LIMIT = 10_000
MAX_VALUES = 50  # names in one filter
CSV_COLUMNS = (
    "cluster",
    "job_id",
    "restart_count",
    "user",
    "account",
    "partition",
    "state",
    "slurm_state",
    "exit_code",
    "signal",
    "job_name",
    "start",
    "end",
    "elapsed_s",
    "nodes",
    "energy_j",
    "facility_energy_j",
    "co2e_g",
    "effective_g_per_kwh",
    "quality",
    "coverage_fraction",
    "partial",
    "run",
    "gpu_util_pct",
    "waste_j",
    "waste_co2e_g",
)  # fmt: skip  (new columns last: scripts that read by position keep theirs)


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
        since, until = _epoch_s(request.get("since_s")), _epoch_s(request.get("until_s"))
        names = {
            key: _names(request.get(key, []), key) for key in ("users", "accounts", "partitions", "states")
        }
        names["states"] = tuple(map(state_name, names["states"]))
        limit, mine = request.get("limit", 100), request.get("mine", True)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit must be an integer from 0 to {MAX_LIMIT}")
        if not isinstance(mine, bool):
            raise QueryError("mine must be true or false")
        return cls(since, until, mine=mine, limit=limit, **names)

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

    def selection(self, scope: visibility.Scope) -> readonly.JobSelection:
        """What the database is asked for: these filters, within what the scope may see."""
        return readonly.JobSelection(
            since_s=self.since_s,
            until_s=self.until_s,
            visible=readonly.visible_filter(scope.everything, scope.uid, scope.accounts),
            limit=self.limit if self.limit > 0 else MAX_LIMIT,
            rungs=RUNGS,
            owner_uid=scope.uid if self.mine else None,
            users=self.users,
            accounts=self.accounts,
            partitions=self.partitions,
            slurm_states=tuple(state.upper() for state in self.states if state.upper() in SLURM_STATES),
            ended=not self.states or self.states != ("running",),
        )


def _epoch_s(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise QueryError("since_s and until_s must be numbers (UTC epoch seconds)")
    return float(value)


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_VALUES:
        raise QueryError(f"{key} must be a list of at most {MAX_VALUES} names")
    if not all(isinstance(v, str) and 0 < len(v) <= 256 for v in value):
        raise QueryError(f"{key} must hold non-empty names")
    return tuple(value)


def job_list(reader: Reader, scope: visibility.Scope, wanted: JobFilter) -> dict[str, Any]:
    """The jobs matching `wanted` that the scope may see, newest first, with totals over all matches."""
    rows, totals = readonly.job_listing(reader, wanted.selection(scope))
    return build(rows, totals, wanted.to_request())


def build(rows: list[dict[str, Any]], totals: dict[str, Any], filters: dict[str, Any]) -> dict[str, Any]:
    jobs = [_job(row) for row in rows]
    return {
        "schema": SCHEMA,
        "filters": {
            **filters,
            "since": iso_z(filters["since_s"], "seconds"),
            "until": iso_z(filters["until_s"], "seconds"),
        },
        "jobs": jobs,
        "truncated": totals["jobs"] > len(jobs),
        "totals": {
            "jobs": totals["jobs"],
            "energy_j": round(totals["energy_j"], 3),
            "facility_energy_j": round(totals["facility_energy_j"], 3),
            "co2e_g": figures.kept(totals["co2e_g"]),
            "waste_j": round(totals["waste_j"], 3),
            "waste_co2e_g": figures.kept(totals["waste_co2e_g"]),
        },
    }


def _job(row: dict[str, Any]) -> dict[str, Any]:
    facility, co2e = row["facility_energy_j"], row["co2e_g"]
    rung = RUNGS[row["rung_rank"]] if row["rung_rank"] is not None else None
    complete = row["footprints"] == row["nodes"]
    return {
        "cluster": row["cluster"],
        "job_id": row["job_id"],
        "restart_count": row["restart_count"],
        "run": row["run"],
        "user": row["user_name"],
        "account": row["account"],
        "partition": row["partition"],
        "state": "completed",
        "slurm_state": row["slurm_state"],
        "job_name": row["job_name"],
        **ended_run(row),
        "effective_g_per_kwh": round(co2e / (facility / J_PER_KWH), 3) if complete and facility else None,
        "quality": QUALITY.get(rung or "", None) if complete else None,
        "coverage_fraction": round(row["covered_s"] / row["parts_s"], 4) if row["parts_s"] else 0.0,
        "partial": bool(row["partial"]),
        **run_use(row, complete),
    }


def run_use(row: dict[str, Any], complete: bool) -> dict[str, Any]:
    """Waste (idle GPUs + idle cores, docs/attribution.md) and the GPUs' mean utilisation; null where a
    part has no figure (stored before version 12, or no cgroup reading) or no GPU was read."""
    known = row["waste_parts"] == row["nodes"]
    waste_co2e = row["waste_co2e_g"]
    sampled = row["gpu_sampled_s"]
    return {
        "gpu_util_pct": round(row["gpu_util_s"] / sampled, 1) if sampled else None,
        "waste_j": round(row["waste_j"], 3) if known else None,
        "waste_co2e_g": figures.kept(waste_co2e) if known and complete and waste_co2e is not None else None,
    }


def ended_run(row: dict[str, Any]) -> dict[str, Any]:
    """How a stored run ended and what it used, as a listed job and an array task both show it (a
    `readonly` listing row); the footprint figures only once every node's part has one."""
    facility, co2e = row["facility_energy_j"], row["co2e_g"]
    complete = row["footprints"] == row["nodes"]
    return {
        "exit_code": row["exit_code"],
        "signal": row["exit_signal"],
        "start": iso_z(row["start_s"], "seconds"),
        "end": iso_z(row["end_s"], "seconds"),
        "elapsed_s": round(row["end_s"] - row["start_s"], 3),
        "nodes": row["nodes"],
        "energy_j": round(row["energy_j"], 3),
        "facility_energy_j": round(facility, 3) if complete and facility is not None else None,
        "co2e_g": figures.kept(co2e) if complete and co2e is not None else None,
    }


def _job_id(job: dict[str, Any]) -> str:
    """A requeued run shows as JOBID.RESTART."""
    return f"{job['job_id']}.{job['restart_count']}" if job["restart_count"] else str(job["job_id"])


def _signal(job: dict[str, Any]) -> str:
    return "-" if job["exit_code"] is None else f"{job['exit_code']}:{job['signal']}"


def _cover(job: dict[str, Any]) -> str:
    return f"{job['coverage_fraction']:.0%}{'*' if job['partial'] else ''}"


def _when(key: str) -> Callable[[dict[str, Any], dt.tzinfo], str]:
    return lambda job, tz: local(job[key], tz, "%Y-%m-%d %H:%M")


Cell = Callable[[dict[str, Any], dt.tzinfo], str | float | None]


@dataclass(frozen=True)
class Field:
    """A `--fields` column: its header, its cell (a number is formatted with the whole column, to one
    precision by `figures.column`), and for "energy" the units its header picks from."""

    header: str
    cell: Cell
    units: figures.Units | None = None


# `--fields`, as `sacct --format`: name -> its column, cells in the site's time zone
FIELDS: dict[str, Field] = {
    "jobid": Field("JobID", lambda job, tz: _job_id(job)),
    "user": Field("User", lambda job, tz: job["user"]),
    "account": Field("Account", lambda job, tz: job["account"] or ""),
    "partition": Field("Partition", lambda job, tz: job["partition"] or ""),
    "state": Field("State", lambda job, tz: job["slurm_state"] or job["state"].upper()),
    "exit_code": Field("ExitCode", lambda job, tz: _signal(job)),
    "name": Field("JobName", lambda job, tz: printable(job["job_name"] or "", 24)),
    "start": Field("Start", _when("start")),
    "end": Field("End", _when("end")),
    "elapsed": Field("Elapsed", lambda job, tz: duration(job["elapsed_s"])),
    "nodes": Field("Nodes", lambda job, tz: str(job["nodes"])),
    "energy": Field("", lambda job, tz: job["energy_j"], figures.ENERGY_UNITS),  # header: the unit
    "energy_kwh": Field("kWh", lambda job, tz: job["energy_j"] / J_PER_KWH),
    "energy_j": Field("J", lambda job, tz: job["energy_j"]),
    "co2e_g": Field("CO2e g", lambda job, tz: job["co2e_g"]),
    "g_per_kwh": Field(
        "g/kWh",
        lambda job, tz: "-" if job["effective_g_per_kwh"] is None else f"{job['effective_g_per_kwh']:.0f}",
    ),
    "quality": Field("Intensity", lambda job, tz: job["quality"] or "-"),
    "coverage": Field(
        "Cover", lambda job, tz: f"{job['coverage_fraction']:.0%}{'*' if job['partial'] else ''}"
    ),
    "gpu_util": Field("GPU util", lambda job, tz: percent(job["gpu_util_pct"])),
    "waste_kwh": Field(
        "Waste kWh", lambda job, tz: None if job["waste_j"] is None else job["waste_j"] / J_PER_KWH
    ),
    "waste_co2e_g": Field("Waste CO2e g", lambda job, tz: job["waste_co2e_g"]),
}
# The default table fits 100 columns with everyday names; --wide adds where, how many and how sure.
WIDE = ("jobid", "user", "account", "partition", "state", "start", "elapsed", "nodes", "energy", "co2e_g",
        "g_per_kwh", "quality", "coverage")  # fmt: skip
NARROW = tuple(name for name in WIDE if name not in {"partition", "nodes", "g_per_kwh", "quality"})


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} %"


def field_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """`--fields` checked: known names, lower case; QueryError names the first unknown one."""
    for name in names:
        if name.lower() not in FIELDS:
            raise QueryError(f"unknown field {name[:40]!r} (one of {', '.join(FIELDS)})")
    return tuple(name.lower() for name in names)


def _column(field: Field, jobs: list[dict[str, Any]], tz: dt.tzinfo) -> tuple[str, list[str], str]:
    """A column's header, cells and alignment: text as it is (left), numbers to one precision and one
    unit (right)."""
    values = [field.cell(job, tz) for job in jobs]
    if all(isinstance(v, str) for v in values):
        return field.header, [str(v) for v in values], "left"
    numbers = [None if isinstance(v, str) else v for v in values]
    if field.units is not None:
        return (*figures.unit_column(numbers, field.units), "right")
    return field.header, figures.column(numbers), "right"


def table(
    document: dict[str, Any], tz: dt.tzinfo = dt.UTC, wide: bool = False, fields: tuple[str, ...] = ()
) -> str:
    """Rows like `sacct`, newest first, then the totals over every matching job; `fields` (FIELDS'
    names) choose the columns, else the default or `wide` set."""
    from tabulate import tabulate

    jobs = document["jobs"]
    columns = [_column(FIELDS[name], jobs, tz) for name in fields or (WIDE if wide else NARROW)]
    headers = [header for header, _, _ in columns]
    rows = [list(row) for row in zip(*(cells for _, cells, _ in columns), strict=True)]
    totals = document["totals"]
    more = f" (showing the newest {len(jobs)}; --limit 0 for all)" if document["truncated"] else ""
    footer = (
        f"{totals['jobs']} jobs{more}: {figures.energy(totals['energy_j'])} IT, "
        f"{figures.energy(totals['facility_energy_j'])} facility, {figures.mass(totals['co2e_g'])} CO2e"
    )
    if totals["waste_j"]:  # records of earlier releases have no waste figure: say nothing, not 0
        footer += f"; waste {figures.energy(totals['waste_j'])}, {figures.mass(totals['waste_co2e_g'])} CO2e"
    if not rows:
        return f"no jobs match\n{footer}"
    body = tabulate(rows, headers=headers, disable_numparse=True, colalign=[a for _, _, a in columns])
    return f"{body}\n{footer}"


def csv_text(document: dict[str, Any]) -> str:
    """One header line, then one line per job; numbers unrounded by rendering, times ISO UTC."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for job in document["jobs"]:
        writer.writerow(["" if job[c] is None else job[c] for c in CSV_COLUMNS])
    return out.getvalue()
