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
)  # fmt: skip  (run last: columns scripts read by position keep theirs)


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
            "co2e_g": round(totals["co2e_g"], 4),
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
        "exit_code": row["exit_code"],
        "signal": row["exit_signal"],
        "job_name": row["job_name"],
        "start": iso_z(row["start_s"], "seconds"),
        "end": iso_z(row["end_s"], "seconds"),
        "elapsed_s": round(row["end_s"] - row["start_s"], 3),
        "nodes": row["nodes"],
        "energy_j": round(row["energy_j"], 3),
        "facility_energy_j": round(facility, 3) if complete and facility is not None else None,
        "co2e_g": round(co2e, 4) if complete and co2e is not None else None,
        "effective_g_per_kwh": round(co2e / (facility / J_PER_KWH), 3) if complete and facility else None,
        "quality": QUALITY.get(rung or "", None) if complete else None,
        "coverage_fraction": round(row["covered_s"] / row["parts_s"], 4) if row["parts_s"] else 0.0,
        "partial": bool(row["partial"]),
    }


HEADERS = ("JobID", "User", "Account", "Partition", "State", "Start", "Elapsed", "Nodes", "kWh", "CO2e g",
           "g/kWh", "Intensity", "Cover")  # fmt: skip
# The default table fits 100 columns with everyday names; --wide adds where, how many and how sure.
NARROW = tuple(
    i for i, name in enumerate(HEADERS) if name not in {"Partition", "Nodes", "g/kWh", "Intensity"}
)


def _job_id(job: dict[str, Any]) -> str:
    """A requeued run shows as JOBID.RESTART."""
    return f"{job['job_id']}.{job['restart_count']}" if job["restart_count"] else str(job["job_id"])


def _signal(job: dict[str, Any]) -> str:
    return "-" if job["exit_code"] is None else f"{job['exit_code']}:{job['signal']}"


# `--fields`, as `sacct --format`: name -> (header, the cell of a job in the site's time zone)
FIELDS: dict[str, tuple[str, Callable[[dict[str, Any], dt.tzinfo], str]]] = {
    "jobid": ("JobID", lambda job, tz: _job_id(job)),
    "user": ("User", lambda job, tz: job["user"]),
    "account": ("Account", lambda job, tz: job["account"] or ""),
    "partition": ("Partition", lambda job, tz: job["partition"] or ""),
    "state": ("State", lambda job, tz: job["slurm_state"] or job["state"].upper()),
    "exit_code": ("ExitCode", lambda job, tz: _signal(job)),
    "name": ("JobName", lambda job, tz: printable(job["job_name"] or "", 24)),
    "start": ("Start", lambda job, tz: local(job["start"], tz, "%Y-%m-%d %H:%M")),
    "end": ("End", lambda job, tz: local(job["end"], tz, "%Y-%m-%d %H:%M")),
    "elapsed": ("Elapsed", lambda job, tz: duration(job["elapsed_s"])),
    "nodes": ("Nodes", lambda job, tz: str(job["nodes"])),
    "energy_kwh": ("kWh", lambda job, tz: f"{job['energy_j'] / J_PER_KWH:.3g}"),
    "energy_j": ("J", lambda job, tz: f"{job['energy_j']:.3g}"),
    "co2e_g": ("CO2e g", lambda job, tz: "-" if job["co2e_g"] is None else f"{job['co2e_g']:.3g}"),
    "g_per_kwh": (
        "g/kWh",
        lambda job, tz: "-" if job["effective_g_per_kwh"] is None else f"{job['effective_g_per_kwh']:.0f}",
    ),
    "quality": ("Intensity", lambda job, tz: job["quality"] or "-"),
    "coverage": ("Cover", lambda job, tz: f"{job['coverage_fraction']:.0%}{'*' if job['partial'] else ''}"),
}


def field_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """`--fields` checked: known names, lower case; QueryError names the first unknown one."""
    for name in names:
        if name.lower() not in FIELDS:
            raise QueryError(f"unknown field {name[:40]!r} (one of {', '.join(FIELDS)})")
    return tuple(name.lower() for name in names)


def table(
    document: dict[str, Any], tz: dt.tzinfo = dt.UTC, wide: bool = False, fields: tuple[str, ...] = ()
) -> str:
    """Rows like `sacct`, newest first, then the totals over every matching job; `fields` (FIELDS'
    names) choose the columns, else the default or `wide` set."""
    from tabulate import tabulate

    if fields:
        headers = [FIELDS[name][0] for name in fields]
        rows = [[FIELDS[name][1](job, tz) for name in fields] for job in document["jobs"]]
    else:
        shown_columns = range(len(HEADERS)) if wide else NARROW
        headers = [HEADERS[i] for i in shown_columns]
        rows = [[row[i] for i in shown_columns] for row in (_table_row(job, tz) for job in document["jobs"])]
    totals = document["totals"]
    shown = len(document["jobs"])
    more = f" (showing the newest {shown}; --limit 0 for all)" if document["truncated"] else ""
    footer = (
        f"{totals['jobs']} jobs{more}: {totals['energy_j'] / J_PER_KWH:.3f} kWh IT, "
        f"{totals['facility_energy_j'] / J_PER_KWH:.3f} kWh facility, {totals['co2e_g'] / 1000:.3f} kg CO2e"
    )
    if not rows:
        return f"no jobs match\n{footer}"
    body = tabulate(rows, headers=headers, disable_numparse=True, stralign="left")
    return f"{body}\n{footer}"


def _table_row(job: dict[str, Any], tz: dt.tzinfo) -> list[str]:
    return [
        FIELDS["jobid"][1](job, tz),
        job["user"],
        job["account"] or "",
        job["partition"] or "",
        job["slurm_state"] or job["state"].upper(),
        local(job["start"], tz, "%Y-%m-%d %H:%M"),
        duration(job["elapsed_s"]),
        str(job["nodes"]),
        f"{job['energy_j'] / J_PER_KWH:.4f}",
        "-" if job["co2e_g"] is None else f"{job['co2e_g']:.2f}",
        "-" if job["effective_g_per_kwh"] is None else f"{job['effective_g_per_kwh']:.0f}",
        job["quality"] or "-",
        f"{job['coverage_fraction']:.0%}{'*' if job['partial'] else ''}",
    ]


def csv_text(document: dict[str, Any]) -> str:
    """One header line, then one line per job; numbers unrounded by rendering, times ISO UTC."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for job in document["jobs"]:
        writer.writerow(["" if job[c] is None else job[c] for c in CSV_COLUMNS])
    return out.getvalue()
