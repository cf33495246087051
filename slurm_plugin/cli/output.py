"""The one output layer of `jobcarbon`: the `--format` option and the JSON, CSV and table writers.

A command builds a `Result` (its JSON document, which names its own schema, and the table and CSV
forms it has) and `emit` writes the form asked for; no command formats or prints data itself. The
library modules that lay out a domain document (a job summary, a monthly report) hand their text in
through the `Result`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slurm_plugin.errors import UsageError

FORMATS = ("table", "json", "csv")


@dataclass(frozen=True)
class Result:
    """One result in each form a command offers; the forms are built only when asked for."""

    document: Any  # the JSON form: an object carrying its "schema" id (records: a list of them)
    table: Callable[[], str]
    csv: Callable[[], str] | None = None  # None: no tabular form, `--format csv` is refused
    extra: Mapping[str, Callable[[], str]] = field(default_factory=dict)  # e.g. the report's html


def add_format_option(
    parser: argparse.ArgumentParser,
    schema: str,
    *,
    csv: bool = True,
    csv_alias: bool = False,
    extra: tuple[str, ...] = (),
) -> None:
    """`--format table|json|csv` and its aliases `--json` (and `--csv`), the same on every command."""
    offered = ("table", "json", *(("csv",) if csv else ()), *extra)
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--format",
        choices=(*FORMATS, *extra),  # all of them, so an unoffered one gets check_format's one line
        default="table",
        metavar="{" + ",".join(offered) + "}",
        help=f"output format (default: table); JSON is {schema}",
    )
    group.add_argument("--json", dest="format", action="store_const", const="json", help="--format json")
    if csv_alias:
        group.add_argument("--csv", dest="format", action="store_const", const="csv", help="--format csv")
    parser.set_defaults(formats=offered, command_name=parser.prog.removeprefix("jobcarbon "))


def check_format(args: argparse.Namespace) -> None:
    """Refuse, before any work, a format this command has no form for (a job summary has no CSV)."""
    offered = getattr(args, "formats", None)
    if offered and args.format not in offered:
        raise UsageError(
            f"{args.command_name} has no {args.format} form: use --format {' or '.join(offered)}"
        )


def render(result: Result, fmt: str) -> str:
    """The text of `result` in `fmt`, ending with a newline."""
    if fmt == "json":
        return json_text(result.document)
    producer = {"table": result.table, "csv": result.csv, **result.extra}.get(fmt)
    if producer is None:  # check_format refuses this first; kept so a wiring mistake is one line too
        raise UsageError(f"no {fmt} form for this result")
    text = producer()
    return text if text.endswith("\n") or not text else text + "\n"


def emit(result: Result, fmt: str) -> None:
    sys.stdout.write(render(result, fmt))


def json_text(document: Any) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header line, then one line per row; None is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return out.getvalue()


def table_text(header: Sequence[str], rows: Iterable[Sequence[Any]], floatfmt: str = ".1f") -> str:
    """Columns lined up under a header, for people."""
    from tabulate import tabulate  # only here: the job read path must not import it

    return tabulate(list(rows), headers=list(header), floatfmt=floatfmt)


def aligned(rows: Sequence[Sequence[str]]) -> str:
    """Columns lined up without a header; the last one runs free (doctor's lines)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)] if rows else []
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    )
