"""Job arrays and heterogeneous jobs from the stored records alone (no `sacct`): `123_4` and `123+1`
resolved to the raw id slurmd gave the prolog, and `jobcarbon <array id>` as one summary of its tasks
(`jobcarbon/array-summary/1`).

The ids come from the records' `slurm` block (docs/record.md), so a job stored without it (an earlier
release, or a node that did not hear from Slurm) is not found here and the caller falls back to sacct.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from slurm_plugin import figures, runs
from slurm_plugin.query import job_list, running, visibility
from slurm_plugin.query.job_summary import JobNotFound
from slurm_plugin.storage import readonly
from slurm_plugin.storage.readonly import QueryError, Reader
from slurm_plugin.times import iso_z

SCHEMA = "jobcarbon/array-summary/1"


def show(reader: Reader, scope: visibility.Scope, request: dict[str, Any]) -> dict[str, Any]:
    """The answer to a validated-here "show" request: {"job_id", "cluster", optional "member":
    {"separator": "_" or "+", "index"}, optional "run"}: an array's summary, a job's, or a running job's
    so far; with "run", that run of the job (never an array's summary)."""
    job_id, cluster, member = request.get("job_id"), request.get("cluster"), request.get("member")
    run = request.get("run")
    if not isinstance(job_id, int) or not _uint(job_id) or job_id == 0:
        raise QueryError("job_id must be a positive integer")
    if cluster is not None and (not isinstance(cluster, str) or len(cluster) > 256):
        raise QueryError("cluster must be a name")
    if run is not None and not (run == runs.LEGACY or runs.valid(run)):
        raise QueryError("run must be a run as `other_runs` lists them (sluid:…, start:…, seen:…, or '')")
    if member is None:
        array = array_summary(reader, scope, job_id, cluster) if run is None else None
        return array or running.job_or_running(reader, scope, job_id, cluster, run)
    if not (
        isinstance(member, dict) and member.get("separator") in ("_", "+") and _uint(member.get("index"))
    ):
        raise QueryError('member must be {"separator": "_" or "+", "index": an integer >= 0}')
    raw = member_job_id(reader, scope, member["separator"], job_id, member["index"], cluster)
    if raw is None:
        raise JobNotFound(job_id)
    return running.job_or_running(reader, scope, raw, cluster, run)


def _uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def member_job_id(
    reader: Reader, scope: visibility.Scope, separator: str, group_id: int, index: int, cluster: str | None
) -> int | None:
    """The raw job id of array task `group_id`_`index` or het component `group_id`+`index` that the scope
    may see (the latest run), or None."""
    visible = visibility.visible(readonly.member_runs(reader, separator, group_id, index), scope, cluster)
    return visible[-1]["job_id"] if visible else None


def array_summary(
    reader: Reader, scope: visibility.Scope, array_job_id: int, cluster: str | None
) -> dict[str, Any] | None:
    """The array's summary over the tasks the scope may see, or None when `array_job_id` is no stored
    array's id (or none of its tasks is visible: the same answer)."""
    rows = visibility.visible(readonly.array_tasks(reader, array_job_id), scope, cluster)
    if not rows:
        return None
    clusters = sorted({row["cluster"] for row in rows})
    rows = [row for row in rows if row["cluster"] == clusters[0]]
    latest = {row["array_task_id"]: row for row in rows}  # a requeued task's last run
    tasks = [_task(row) for _, row in sorted(latest.items())]
    complete = all(task["co2e_g"] is not None for task in tasks)
    biggest = max(tasks, key=lambda task: task["energy_j"])
    return {
        "schema": SCHEMA,
        "cluster": clusters[0],
        "array_job_id": array_job_id,
        "users": sorted({row["user_name"] for row in rows}),
        "start": iso_z(min(row["start_s"] for row in rows), "seconds"),
        "end": iso_z(max(row["end_s"] for row in rows), "seconds"),
        "tasks": tasks,
        "states": dict(sorted(Counter(task["state"] or "UNKNOWN" for task in tasks).items())),
        "totals": {
            "tasks": len(tasks),
            "elapsed_s": round(sum(task["elapsed_s"] for task in tasks), 3),
            "energy_j": round(sum(task["energy_j"] for task in tasks), 3),
            "facility_energy_j": _total(tasks, "facility_energy_j") if complete else None,
            "co2e_g": _total(tasks, "co2e_g") if complete else None,
            **_waste(tasks),
        },
        "most_energy": {"task_id": biggest["task_id"], "energy_j": biggest["energy_j"]},
    }


def _task(row: dict[str, Any]) -> dict[str, Any]:
    ended = job_list.ended_run(row)
    return {
        "task_id": row["array_task_id"],
        "job_id": row["job_id"],
        "restart_count": row["restart_count"],
        "state": row["slurm_state"],
        **ended,
        **job_list.run_use(row, ended["co2e_g"] is not None),
    }


def _waste(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """The tasks' waste (idle GPUs + idle cores), or null where a task has no figure: a sum over some
    tasks would pass for the array's."""
    known = all(task["waste_j"] is not None for task in tasks)
    priced = known and all(task["waste_co2e_g"] is not None for task in tasks)
    return {
        "waste_j": round(sum(task["waste_j"] for task in tasks), 3) if known else None,
        "waste_co2e_g": _total(tasks, "waste_co2e_g") if priced else None,
    }


def _total(tasks: list[dict[str, Any]], key: str) -> float:
    return figures.kept(sum(task[key] for task in tasks))


def text(document: dict[str, Any]) -> str:
    """`jobcarbon <array id>`: one line per task, then the totals."""
    from tabulate import tabulate

    from slurm_plugin.query.job_summary_text import duration

    tasks = document["tasks"]
    unit, energies = figures.unit_column([task["energy_j"] for task in tasks], figures.ENERGY_UNITS)
    co2e = figures.column([task["co2e_g"] for task in tasks])
    rows = [
        [
            f"{document['array_job_id']}_{task['task_id']}",
            task["job_id"],
            task["state"] or "-",
            "-" if task["exit_code"] is None else f"{task['exit_code']}:{task['signal']}",
            duration(task["elapsed_s"]),
            energy,
            grams,
        ]
        for task, energy, grams in zip(tasks, energies, co2e, strict=True)
    ]
    headers = ["Task", "JobID", "State", "ExitCode", "Elapsed", unit, "CO2e g"]
    if any(task["gpu_util_pct"] is not None for task in tasks):  # the GPUs' mean use, as `jobs` shows it
        headers.append("GPU util")
        for row, task in zip(rows, tasks, strict=True):
            row.append(job_list.percent(task["gpu_util_pct"]))
    totals = document["totals"]
    states = ", ".join(f"{count} {state}" for state, count in document["states"].items())
    total_co2e = "-" if totals["co2e_g"] is None else f"{figures.mass(totals['co2e_g'])} CO2e"
    most = document["most_energy"]
    head = f"array {document['array_job_id']} on cluster {document['cluster']}: {totals['tasks']} tasks"
    lines = [
        f"{head} ({states})",
        tabulate(rows, headers=headers, disable_numparse=True, stralign="left"),
        f"total: {figures.energy(totals['energy_j'])} IT, {total_co2e}, {duration(totals['elapsed_s'])} "
        f"of task time; most energy: task {most['task_id']} ({figures.energy(most['energy_j'])})",
    ]
    return "\n".join(lines + _waste_line(totals))


def _waste_line(totals: dict[str, Any]) -> list[str]:
    """The tasks' waste, where every task has a figure and there is some (docs/attribution.md)."""
    if not totals["waste_j"]:
        return []
    grams = totals["waste_co2e_g"]
    co2e = "" if grams is None else f", {figures.mass(grams)} CO2e"
    share = totals["waste_j"] / totals["energy_j"] if totals["energy_j"] else 0.0
    wasted = figures.energy(totals["waste_j"])
    return [f"wasted: {wasted}{co2e} ({share:.0%} of the IT energy: idle GPUs and cores)"]
