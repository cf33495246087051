"""The query commands of `jobcarbon`: `<jobid>` / `show`, `jobs` and `serve`.

The caller is the real uid (os.getuid()); with `visibility.socket` set the question goes to the
query service, which finds the caller itself from the socket, otherwise to the database directly.
Either way the same visibility rules choose what comes back.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import Any

from slurm_plugin.cli import output
from slurm_plugin.config import Config, site_timezone
from slurm_plugin.errors import JobcarbonError, UsageError

DEFAULT_WINDOW = dt.timedelta(days=7)


def show(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.query import advice, arrays, job_summary_text, slurm_ids

    ref = slurm_ids.parse(args.job)
    summary = _stored_summary(settings, ref, args.cluster, args.job_run)
    if summary["schema"] == arrays.SCHEMA:
        output.emit(output.Result(summary, table=lambda: arrays.text(summary)), args.format)
        return 0
    if summary["state"] == "running":
        _add_projection(summary, ref)
    found = advice.notes(summary, settings.advice)
    if found:
        summary["advice"] = found
    # The zone only for the text: JSON is UTC, and a bad accounting.timezone does not stop it.
    result = output.Result(summary, table=lambda: job_summary_text.render(summary, site_timezone(settings)))
    output.emit(result, args.format)
    return 0


def _stored_summary(settings: Config, ref: Any, cluster: str | None, run: str | None) -> dict[str, Any]:
    """The job's (or array's) summary, of its run `run` if given; an array task or het component is
    found by the ids its records carry, else resolved by sacct (records of earlier releases have none)."""
    request = {"op": "show", "job_id": ref.job_id, "cluster": cluster}
    if run is not None:
        request["run"] = run
    if not ref.is_raw:
        member = {"separator": ref.separator, "index": ref.index}
        try:
            return _ask_or_read(settings, "summary", {**request, "member": member})
        except _NotStored:
            request["job_id"] = _resolve(ref)
    try:
        return _ask_or_read(settings, "summary", request)
    except _NotStored:
        if run is not None:
            raise JobcarbonError(f"no run {run!r} of job {ref.text} in the jobcarbon database") from None
        raise JobcarbonError(_not_stored(ref, request["job_id"])) from None


def _add_projection(summary: dict[str, Any], ref: Any) -> None:
    """A running job's projection to its time limit: as the node's agent had it from scontrol, else from
    Slurm's accounting (sacct, as the caller)."""
    from slurm_plugin.query import running, slurm_ids

    limit = (summary.get("slurm") or {}).get("time_limit_s")
    if limit is None:
        try:
            found = slurm_ids.lookup(slurm_ids.JobSpec(str(summary["job_id"]), summary["job_id"]))
        except slurm_ids.JobIdError:
            found = None
        limit = found.time_limit_s if found else None
    summary.setdefault("progress", {})["projection"] = running.project(summary, limit)


def _resolve(ref: Any) -> int:
    """The raw id of an array task or het component, from sacct; errors say what Slurm said."""
    from slurm_plugin.query import slurm_ids

    found = slurm_ids.lookup(ref)
    if found is None:
        raise slurm_ids.JobIdError(f"no job {ref.text} in Slurm's accounting (sacct)")
    if found.phase == "pending":
        raise slurm_ids.JobIdError(f"job {ref.text} is still pending: nothing has been measured yet")
    return found.raw_id


def _not_stored(ref: Any, job_id: int) -> str:
    """Why a job has no summary, as far as Slurm (run as the caller, with its own privacy) can tell.

    The query's answer for a job the caller may not see is the same as for an unknown one, and so is
    this message: it depends only on what sacct shows the caller.
    """
    from slurm_plugin.query import slurm_ids

    unknown = f"no job {ref.text} in the jobcarbon database"
    try:
        found = slurm_ids.lookup(slurm_ids.JobSpec(str(job_id), job_id)) if slurm_ids.sacct_path() else None
    except slurm_ids.JobIdError:
        return unknown
    if found is None:
        return unknown
    if found.phase == "pending":
        return f"job {ref.text} is still pending: nothing has been measured yet"
    if found.phase == "running":
        # Hook for live summaries: a running job has no database row until its epilog.
        return f"job {ref.text} is still running: its summary is available when it ends"
    return f"job {ref.text} ended ({found.state}) but was not measured (or not ingested yet)"


def jobs(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.query import job_list
    from slurm_plugin.query.job_list import MAX_LIMIT, JobFilter, state_name
    from slurm_plugin.storage.readonly import QueryError

    if not 0 <= args.limit <= MAX_LIMIT:
        raise UsageError(f"--limit must be from 0 to {MAX_LIMIT}")
    try:
        states = tuple(map(state_name, args.state))
        fields = job_list.field_names(args.fields)
    except QueryError as exc:
        raise UsageError(str(exc)) from None
    tz = site_timezone(settings)
    until = _site_time(args.until, tz) if args.until else dt.datetime.now(dt.UTC)
    since = _site_time(args.since, tz) if args.since else until - DEFAULT_WINDOW
    if since > until:
        raise UsageError(
            f"-S {since.isoformat(timespec='minutes')} is after -E {until.isoformat(timespec='minutes')}"
        )
    wanted = JobFilter(
        since_s=since.timestamp(),
        until_s=until.timestamp(),
        users=args.user,
        accounts=args.account,
        partitions=args.partition,
        states=states,
        mine=not (args.all_users or args.user or args.account),
        limit=args.limit,
    )
    document = _ask_or_read(settings, "list", {"op": "jobs", **wanted.to_request()})
    output.emit(
        output.Result(
            document,
            table=lambda: job_list.table(document, site_timezone(settings), wide=args.wide, fields=fields),
            csv=lambda: job_list.csv_text(document),
        ),
        args.format,
    )
    return 0


class _NotStored(Exception):
    """No such job the caller may see: from the service or the database, the same."""


def _ask_or_read(settings: Config, key: str, request: dict[str, Any]) -> dict[str, Any]:
    """The service's answer when a socket is configured, else the same query on the database."""
    if settings.visibility.socket is None:
        return _read(settings, request)
    from slurm_plugin.query import client

    try:
        return client.ask(settings.visibility.socket, request)[key]
    except client.Refused as exc:
        if exc.kind == "not_found":
            raise _NotStored from None
        raise
    except KeyError:
        raise JobcarbonError("the jobcarbon query service gave no usable answer") from None


def _read(settings: Config, request: dict[str, Any]) -> dict[str, Any]:
    """The query on the database, as the caller's real uid."""
    from slurm_plugin.query import arrays, job_list, visibility
    from slurm_plugin.query.job_summary import JobNotFound
    from slurm_plugin.storage import readonly

    scope = visibility.scope_for(visibility.Viewer.from_uid(os.getuid()), settings.visibility)
    reader = readonly.Reader.open(
        settings.database.url,
        settings.database.busy_timeout_s,
        password_file=settings.database.password_file,
    )
    try:
        if request["op"] == "show":
            return arrays.show(reader, scope, request)
        return job_list.job_list(reader, scope, job_list.JobFilter.from_request(request))
    except JobNotFound:
        raise _NotStored from None
    finally:
        reader.close()


def _site_time_text(text: str) -> str:
    """An argparse type: ISO date or date-time, "today" or "yesterday"; resolved by `_site_time`."""
    if text not in ("today", "yesterday"):
        try:
            dt.datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an ISO date or date-time") from None
    return text


def _site_time(text: str, tz: dt.tzinfo) -> dt.datetime:
    """`text` in the site's time zone (accounting.timezone, as the table prints), unless it names an
    offset; "today" and "yesterday" are the site's midnights."""
    days_back = {"today": 0, "yesterday": 1}.get(text)
    if days_back is not None:
        midnight = dt.datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - dt.timedelta(days=days_back)).replace(fold=0)
    moment = dt.datetime.fromisoformat(text)
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def serve_command(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.cli import report
    from slurm_plugin.query import service

    path = args.socket or settings.visibility.socket
    if path is None:
        raise UsageError("no socket to serve on: set visibility.socket or pass --socket")

    def ready(where: Path) -> None:
        print(f"jobcarbon serve: listening on {where} (visibility {settings.visibility.mode})", flush=True)

    try:
        service.serve(settings, Path(path), ready, ops={"report": report.answer})
    except OSError as exc:  # the socket's directory is missing, not ours, ...
        raise JobcarbonError(f"{path}: {exc.strerror or exc}") from None
    return 0


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list, as sacct takes them."""
    names = tuple(n for n in text.split(",") if n)
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return names


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register show, jobs and serve on the top-level parser (`jobcarbon <jobid>` means show)."""
    config_help = argparse.SUPPRESS  # also accepted after the command: `jobcarbon 123 --config F`
    one = commands.add_parser("show", help="summary of one finished job (also: jobcarbon JOBID)")
    one.add_argument("job", help="job id: 123, array task 123_4 or het component 123+1")
    one.add_argument("--cluster", help="the cluster, where several share the database")
    one.add_argument(
        "--run",
        dest="job_run",  # `run` is the command's function
        metavar="RUN",
        help="which job of this id (Slurm reuses ids): a run as 'other runs' lists it, e.g. start:1767225590",
    )
    output.add_format_option(one, "jobcarbon/job-summary/1", csv=False)
    one.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    one.set_defaults(run=show)

    many = commands.add_parser("jobs", help="recent jobs with their energy and carbon, like sacct")
    many.add_argument("-u", "--user", type=_names, default=(), help="only these users (comma-separated)")
    many.add_argument("-A", "--account", type=_names, default=(), help="only these accounts")
    many.add_argument("-r", "--partition", type=_names, default=(), help="only these partitions")
    many.add_argument("-s", "--state", type=_names, default=(), help="only these states (failed,TO,…)")
    many.add_argument("-a", "--all-users", action="store_true", help="every job you may see, not only yours")
    many.add_argument(
        "-S",
        "--since",
        type=_site_time_text,
        help="jobs running at or after; accounting.timezone unless an offset is given (default: 7 days ago)",
    )
    many.add_argument(
        "-E", "--until", type=_site_time_text, help="jobs running at or before; as -S (default: now)"
    )
    many.add_argument(
        "--limit", type=int, default=100, help="newest N jobs (0: up to 10000); totals cover all"
    )
    output.add_format_option(many, "jobcarbon/job-list/1", csv_alias=True)
    many.add_argument(
        "--wide", action="store_true", help="the table with partition, nodes, g/kWh and intensity quality too"
    )
    many.add_argument(
        "--fields", type=_names, default=(), help="the table's columns, e.g. jobid,state,energy_kwh,co2e_g"
    )
    many.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    many.set_defaults(run=jobs)

    service = commands.add_parser("serve", help="the read-only query service on a Unix socket (systemd)")
    service.add_argument("--socket", type=Path, help="socket path (default: visibility.socket)")
    service.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    service.set_defaults(run=serve_command, context="serve")  # its lines go to the journal: name them
