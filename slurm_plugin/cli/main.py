"""The `jobcarbon` command: builds the parser, loads the settings once and dispatches; the error boundary.

Every failure jobcarbon foresees is a `JobcarbonError`: here, and only here, it becomes one line on
stderr and its exit code. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import io
import os
import sys

from slurm_plugin import __version__
from slurm_plugin.cli import accounting, metrics, node, output, query, report
from slurm_plugin.errors import JobcarbonError, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobcarbon", description="Measured energy and carbon of Slurm jobs."
    )
    parser.add_argument("--version", action="version", version=f"jobcarbon {__version__}")
    parser.add_argument("--config", help="configuration file (default: $JOBCARBON_CONFIG or /etc/jobcarbon)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    node.add_commands(commands)
    accounting.add_commands(commands)
    query.add_commands(commands)
    report.add_commands(commands)
    metrics.add_commands(commands)
    parser.set_defaults(commands=frozenset(commands.choices), on_config_error=None, context=None)
    return parser


GLOBAL_FLAGS = ("-h", "--help", "--version")


def with_default_command(argv: list[str], commands: frozenset[str]) -> list[str]:
    """`jobcarbon 123 [...]` means `jobcarbon show 123 [...]`: insert `show` where the command belongs."""
    i = 0
    while i < len(argv) and (argv[i] == "--config" or argv[i].startswith("--config=")):
        i += 1 if "=" in argv[i] else 2
    if i >= len(argv) or argv[i] in commands or argv[i] in GLOBAL_FLAGS:
        return argv
    if argv[i][:1].isalpha():  # a job id starts with a digit: this is a mistyped command
        close = difflib.get_close_matches(argv[i], sorted(commands), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"unknown command {argv[i][:40]!r} ({hint}see jobcarbon --help)")
    # "--" keeps a dash-led argument ("-1") a job id for show to refuse in one line, not an option.
    return [*argv[:i], "show", *(["--"] if argv[i].startswith("-") else []), *argv[i:]]


def main(argv: list[str] | None = None) -> int:
    _tolerant_output()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = with_default_command(argv, parser.get_default("commands"))
    except UsageError as exc:
        print(f"jobcarbon: {exc}", file=sys.stderr)
        return exc.exit_code
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # The reader went away (`jobcarbon jobs | head`): stop quietly, as other tools do; output
        # still buffered goes to /dev/null so the interpreter's exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        failure = one_line(exc)
        if failure is None:
            raise  # a bug: keep its traceback
        line, exit_code = failure
        # `context` names a daemon's lines in its journal (serve).
        print(f"jobcarbon: {args.context + ': ' if args.context else ''}{line}", file=sys.stderr)
        return exit_code


def _tolerant_output() -> None:
    """A terminal or pipe that cannot encode a character (PYTHONIOENCODING=ascii, LANG=C on old
    systems) gets "?" for it, not a UnicodeEncodeError after half the output."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")


def _dispatch(args: argparse.Namespace) -> int:
    """Load the settings once (--config, else $JOBCARBON_CONFIG, else the default) and run the command."""
    from slurm_plugin import config

    output.check_format(args)
    try:
        settings = config.load(args.config)
    except config.ConfigError as exc:
        if args.on_config_error is None:
            raise
        return args.on_config_error(args, exc)
    return args.run(args, settings)


def one_line(exc: Exception) -> tuple[str, int] | None:
    """The line and exit code for a failure jobcarbon foresees; None for a bug."""
    if isinstance(exc, JobcarbonError):
        return f"{exc.prefix}{exc}", exc.exit_code
    return None
