"""`jobcarbon jobs`: recent jobs as a document (`jobcarbon/job-list/1`), a table like sacct's, or CSV.

Pure: `build` shapes the rows `queries.job_list` read; `table` and `csv_text` render the document.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from slurm_plugin.accounting.footprint import J_PER_KWH
from slurm_plugin.query.job_summary import QUALITY, RUNGS
from slurm_plugin.query.job_summary_text import duration, local
from slurm_plugin.times import iso_z

SCHEMA = "jobcarbon/job-list/1"
CSV_COLUMNS = (
    "cluster", "job_id", "restart_count", "user", "account", "partition", "state", "start", "end",
    "elapsed_s", "nodes", "energy_j", "facility_energy_j", "co2e_g", "effective_g_per_kwh", "quality",
    "coverage_fraction", "partial",
)  # fmt: skip


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
        "user": row["user_name"],
        "account": row["account"],
        "partition": row["partition"],
        "state": "completed",
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


def table(document: dict[str, Any], tz: dt.tzinfo = dt.UTC) -> str:
    """Rows like `sacct`, newest first, then the totals over every matching job."""
    from tabulate import tabulate

    rows = [_table_row(job, tz) for job in document["jobs"]]
    totals = document["totals"]
    shown = len(document["jobs"])
    more = f" (showing the newest {shown}; --limit 0 for all)" if document["truncated"] else ""
    footer = (
        f"{totals['jobs']} jobs{more}: {totals['energy_j'] / J_PER_KWH:.3f} kWh IT, "
        f"{totals['facility_energy_j'] / J_PER_KWH:.3f} kWh facility, {totals['co2e_g'] / 1000:.3f} kg CO2e"
    )
    if not rows:
        return f"no jobs match\n{footer}"
    body = tabulate(rows, headers=HEADERS, disable_numparse=True, stralign="left")
    return f"{body}\n{footer}"


def _table_row(job: dict[str, Any], tz: dt.tzinfo) -> list[str]:
    run = f".{job['restart_count']}" if job["restart_count"] else ""
    return [
        f"{job['job_id']}{run}",
        job["user"],
        job["account"] or "",
        job["partition"] or "",
        job["state"].upper(),
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
