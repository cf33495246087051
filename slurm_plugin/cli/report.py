"""`jobcarbon report`: parse the arguments, build the monthly report, render it, write it out."""

from __future__ import annotations

import argparse
import os
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

from slurm_plugin.cli import output
from slurm_plugin.config import Config, site_timezone
from slurm_plugin.errors import JobcarbonError, UsageError

SCHEMA = "jobcarbon/monthly-report/1"
OUTPUT_FIELDS = ("month", "by", "format")  # what an --output template may name


def report(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.reports import formats, monthly
    from slurm_plugin.storage import readonly

    request = monthly.Request(
        month=args.month,
        by=args.by,
        timezone=settings.accounting.timezone,
        now_s=time.time(),
        embodied=settings.embodied,
    )
    html = _html_renderer() if args.format == "html" else None  # before the database: fail fast
    _check_output(args.output)
    site_timezone(settings)  # an unknown zone is one line naming the field, before any month arithmetic
    monthly.resolve_month(request.month, request.timezone, request.now_s)
    if request.by not in monthly.BY:
        raise monthly.ReportError(f"--by {request.by[:40]!r}: choose one of {', '.join(monthly.BY)}")
    reader = readonly.Reader.open(
        settings.database.url, settings.database.busy_timeout_s, password_file=settings.database.password_file
    )
    try:
        document = monthly.build(reader, request)
        result = output.Result(
            document,
            table=lambda: formats.to_table(document, wide=args.wide),
            csv=lambda: formats.to_csv(document),
            extra={"html": lambda: html(document, monthly.intensity_curves(reader, document))}
            if html
            else {},
        )
        text = output.render(result, args.format)  # html reads the database for its charts
    finally:
        reader.close()
    if args.output and args.output != "-":
        meta = document["metadata"]
        _write(Path(args.output.format(month=meta["month"], by=meta["by"], format=args.format)), text)
    else:
        sys.stdout.write(text)
    return 0


def _html_renderer() -> Callable:
    try:
        from slurm_plugin.reports import html
    except ImportError as exc:
        raise JobcarbonError(
            f"--format html needs matplotlib ({exc.name} is missing): pip install 'jobcarbon[report]'"
        ) from None
    return html.render


def _check_output(template: str | None) -> None:
    """An --output template names only {month}, {by} and {format}; "-" is standard output."""
    if not template or template == "-":
        return
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise UsageError(f"--output {template}: {exc} (write a literal brace as {{{{ or }}}})") from None
    unknown = [name for name in names if name not in OUTPUT_FIELDS]
    if unknown:
        raise UsageError(
            f"--output {template}: unknown field {{{unknown[0]}}} (use {{month}}, {{by}} or {{format}})"
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
        "report", help="a month's energy and carbon per account, user, group or partition"
    )
    parser.add_argument(
        "--month", required=True, help="YYYY-MM in accounting.timezone, or 'last' for the previous month"
    )
    # Checked by the command, not argparse's choices, so a bad value is one line and exit 1 like the rest.
    parser.add_argument("--by", default="account", help="account (default), user, group or partition")
    output.add_format_option(parser, SCHEMA, extra=("html",))
    parser.add_argument(
        "--output",
        help="write to this file ('-': stdout) instead of stdout; {month}, {by} and {format} are filled in;"
        " its directory must exist",
    )
    parser.add_argument(
        "--wide", action="store_true", help="the table with CPU, DRAM and GPU kWh and the data-quality shares"
    )
    parser.set_defaults(run=report)
