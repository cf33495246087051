"""`jobcarbon report`: parse the arguments, build the monthly report, render it, write it out."""

from __future__ import annotations

import argparse
import os
import re
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slurm_plugin.cli import output
from slurm_plugin.config import Config, site_timezone
from slurm_plugin.errors import JobcarbonError, UsageError

if TYPE_CHECKING:
    from slurm_plugin.query.visibility import Scope
    from slurm_plugin.storage.readonly import Reader

SCHEMA = "jobcarbon/monthly-report/2"
OUTPUT_FIELDS = ("month", "by", "format", "part")  # what an --output template may name
PARTS = ("rows", "totals", "gpu_models", "top_jobs", "top_users", "ledger", "ledger_shares")  # formats.PARTS
QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
YEAR = re.compile(r"^\d{4}$")
HTML_TOP = 5  # the largest jobs and users the HTML page lists unless --top says otherwise
MAX_TOP = 100  # as many as storage.rollups.TOP_KEPT keeps (tests/reports/test_monthly_rollups.py)


def report(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.reports import formats, monthly

    request = {
        "op": "report",
        "months": _months(args),
        "by": args.by,
        "top": HTML_TOP if args.top is None and args.format == "html" else args.top or 0,
        "curves": args.format == "html",
    }
    html = _html_renderer() if args.format == "html" else None  # before the database: fail fast
    _check_output(args.output)
    if args.part != "rows" and args.format != "csv":
        raise UsageError("--part chooses a part of the CSV: use it with --format csv")
    if not 0 <= request["top"] <= MAX_TOP:
        raise UsageError(f"--top must be from 0 to {MAX_TOP}")
    site_timezone(settings)  # an unknown zone is one line naming the field, before any month arithmetic
    try:
        monthly.resolve_months(request["months"], settings.accounting.timezone, time.time())
    except monthly.ReportError:
        if args.month is not None:
            raise
        named = f"--year {args.year}" if args.year is not None else f"--quarter {args.quarter}"
        raise monthly.ReportError(
            f"{named} has not started yet (time zone {settings.accounting.timezone})"
        ) from None
    if request["by"] not in monthly.BY:
        raise monthly.ReportError(f"--by {request['by'][:40]!r}: choose one of {', '.join(monthly.BY)}")
    if args.meter_kwh is not None and not args.reconcile:
        raise UsageError("--meter-kwh is compared in the --reconcile view: use them together")
    if args.meter_kwh is not None and not args.meter_kwh > 0:
        raise UsageError("--meter-kwh must be a positive number of kWh")
    found = _ask_or_read(settings, request)
    document = found["report"]
    if args.reconcile:
        return _reconcile(document, args)
    result = output.Result(
        document,
        table=lambda: formats.to_table(document, wide=args.wide),
        csv=lambda: formats.to_csv(document, args.part),
        extra={"html": lambda: html(document, found["curves"])} if html else {},
    )
    text = output.render(result, args.format)
    if args.output and args.output != "-":
        meta = document["metadata"]
        name = args.output.format(
            month=formats.period_name(meta), by=meta["by"], format=args.format, part=args.part
        )
        _write(Path(name), text)
    else:
        sys.stdout.write(text)
    return 0


def _reconcile(document: dict[str, Any], args: argparse.Namespace) -> int:
    """`--reconcile`: the node ledger's totals, and a site meter's figure beside them."""
    from slurm_plugin.reports import ledger_text

    if document.get("ledger") is None:
        raise JobcarbonError("--reconcile needs the node ledger, which only a viewer of every job may see")
    found = ledger_text.reconcile(document, args.meter_kwh)
    if args.format not in ("table", "json"):
        raise UsageError("--reconcile is shown as a table or as JSON")
    sys.stdout.write(
        output.render(output.Result(found, table=lambda: ledger_text.reconcile_text(found)), args.format)
    )
    return 0


def _months(args: argparse.Namespace) -> str:
    """The --month value that --year or --quarter stands for, or --month itself."""
    if args.year is not None:
        if not YEAR.match(args.year):
            raise UsageError(f"--year {args.year[:40]!r} is not a year (YYYY)")
        return f"{args.year}-01..{args.year}-12"
    if args.quarter is not None:
        found = QUARTER.match(args.quarter)
        if not found:
            raise UsageError(f"--quarter {args.quarter[:40]!r} is not a quarter (YYYYQ1 to YYYYQ4)")
        first = 3 * int(found[2]) - 2
        return f"{found[1]}-{first:02d}..{found[1]}-{first + 2:02d}"
    return str(args.month)


def _ask_or_read(settings: Config, request: dict[str, Any]) -> dict[str, Any]:
    """The report from the query service when a socket is configured, else from the database as the
    caller's real uid: the same visibility either way."""
    if settings.visibility.socket is not None:
        from slurm_plugin.query import client

        try:
            found = client.ask(settings.visibility.socket, request)
            return {"report": found["report"], "curves": found.get("curves") or {}}
        except client.Refused as exc:
            raise JobcarbonError(str(exc)) from None
        except (KeyError, TypeError):
            raise JobcarbonError("the jobcarbon query service gave no usable answer") from None
    from slurm_plugin.query import visibility
    from slurm_plugin.storage import readonly

    scope = visibility.scope_for(visibility.Viewer.from_uid(os.getuid()), settings.visibility)
    reader = readonly.Reader.open(
        settings.database.url, settings.database.busy_timeout_s, password_file=settings.database.password_file
    )
    try:
        return answer(request, reader, scope, settings)
    finally:
        reader.close()


def answer(request: dict[str, Any], reader: Reader, scope: Scope, settings: Config) -> dict[str, Any]:
    """The report a viewer of `scope` may see, and the intensity curves if asked: for the command
    itself and, as its "report" op, for the query service (`service.Ops`)."""
    from slurm_plugin.query import visibility
    from slurm_plugin.reports import monthly
    from slurm_plugin.storage import readonly

    months, by, top = request.get("months"), request.get("by"), request.get("top", 0)
    if not isinstance(months, str) or len(months) > 200 or not isinstance(by, str) or len(by) > 40:
        raise readonly.QueryError("months and by must be short strings")
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP:
        raise readonly.QueryError(f"top must be an integer from 0 to {MAX_TOP}")
    wanted = monthly.Request(
        months=months,
        by=by,
        timezone=settings.accounting.timezone,
        now_s=time.time(),
        embodied=settings.embodied,
        visible=readonly.visible_filter(scope.everything, scope.uid, scope.accounts),
        viewer=visibility.describe(scope),
        top=top,
        market=settings.accounting.market_factors,
    )
    try:
        document = monthly.build(reader, wanted)
    except monthly.ReportError as exc:
        raise readonly.QueryError(str(exc)) from None
    if scope.everything and reader.db.has_table("node_intervals"):  # node figures cover every job
        document["ledger"] = _ledger(reader, document, settings)
    curves = monthly.intensity_curves(reader, document) if request.get("curves") is True else {}
    return {"report": document, "curves": curves}


def _ledger(reader: Reader, document: dict[str, Any], settings: Config) -> dict[str, Any]:
    from slurm_plugin.reports import ledger

    return ledger.section(reader, document, ledger.settings(settings))


def _html_renderer() -> Callable:
    try:
        from slurm_plugin.reports import html
    except ImportError as exc:
        raise JobcarbonError(
            f"--format html needs matplotlib ({exc.name} is missing): pip install 'jobcarbon[report]'"
        ) from None
    return html.render


def _check_output(template: str | None) -> None:
    """An --output template names only {month}, {by}, {format} and {part}; "-" is standard output."""
    if not template or template == "-":
        return
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise UsageError(f"--output {template}: {exc} (write a literal brace as {{{{ or }}}})") from None
    unknown = [name for name in names if name not in OUTPUT_FIELDS]
    if unknown:
        raise UsageError(
            f"--output {template}: unknown field {{{unknown[0]}}}"
            " (use {month}, {by}, {format} or {part})"
        )


def _write(path: Path, text: str) -> None:
    """Replace `path` whole: a reader (a web server, a mail job) never sees half a report. A missing
    directory is an error, not created: a mistyped path must not grow a tree."""
    if not path.parent.is_dir():
        raise JobcarbonError(f"--output {path}: directory {path.parent} does not exist")
    try:
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        raise JobcarbonError(f"--output {path}: {exc.strerror or exc}") from None


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `jobcarbon report` on the top-level parser."""
    parser = commands.add_parser(
        "report", help="months' energy and carbon per account, user, group or partition"
    )
    period = parser.add_mutually_exclusive_group(required=True)
    period.add_argument(
        "--month",
        help="YYYY-MM in accounting.timezone, 'last' (the previous month), a range 2026-01..2026-06"
        " or a list 2026-01,2026-03",
    )
    period.add_argument("--year", help="YYYY: its months up to the current one")
    period.add_argument("--quarter", help="YYYYQ1 to YYYYQ4")
    # Checked by the command, not argparse's choices, so a bad value is one line and exit 1 like the rest.
    parser.add_argument("--by", default="account", help="account (default), user, group or partition")
    output.add_format_option(parser, SCHEMA, extra=("html",))
    parser.add_argument(
        "--part",
        choices=PARTS,
        default="rows",
        help="the CSV's part: rows per month, cluster and group (default), totals per month and cluster,"
        " gpu_models (GPU-hours per model), top_jobs or top_users (with --top), ledger (the node ledger"
        " per month and cluster) or ledger_shares (its remainder per group, policy proportional)",
    )
    parser.add_argument(
        "--top",
        type=int,
        help=f"list the N largest jobs and users per month and group (default: {HTML_TOP} in HTML, else 0)",
    )
    parser.add_argument(
        "--output",
        help="write to this file ('-': stdout) instead of stdout; {month} (2026-01, or 2026-01..2026-06),"
        " {by}, {format}"
        " and {part} are filled in; its directory must exist",
    )
    parser.add_argument(
        "--wide", action="store_true", help="the table with CPU, DRAM and GPU kWh and the data-quality shares"
    )
    parser.add_argument(
        "--reconcile",
        action="store_true",
        help="the node ledger: jobs + remainder = node IT energy, x PUE = facility energy (admins)",
    )
    parser.add_argument(
        "--meter-kwh",
        type=float,
        help="with --reconcile: the site meter's facility kWh for the period, compared with the ledger's",
    )
    parser.set_defaults(run=report)
