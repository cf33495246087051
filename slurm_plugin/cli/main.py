"""The `jobcarbon` command: a thin layer that parses arguments, calls the library and renders.

Errors the user can act on become one line on stderr and a non-zero exit; everything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from slurm_plugin import __version__
from slurm_plugin.cli import accounting, query, report


def _doctor(args: argparse.Namespace) -> int:
    from slurm_plugin.cli import doctor

    checks = doctor.run(args.config)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=1))
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            print(f"{check.name:<{width}}  {check.status:<7}  {check.detail}")
    return 1 if any(c.status == "error" for c in checks) else 0


def _agent(args: argparse.Namespace) -> int:
    from slurm_plugin.node import agent

    return agent.main(["--persistent"] if args.persistent else [])


def _records(args: argparse.Namespace) -> int:
    from slurm_plugin import config, outbox

    settings = config.load(args.config)
    records = outbox.find(settings.paths.outbox, args.job)
    if not records:
        where = f"job {args.job}" if args.job else "any job"
        print(f"jobcarbon: no record for {where} in {settings.paths.outbox}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print(outbox.render(records))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobcarbon", description="Measured energy and carbon of Slurm jobs."
    )
    parser.add_argument("--version", action="version", version=f"jobcarbon {__version__}")
    parser.add_argument("--config", help="configuration file (default: $JOBCARBON_CONFIG or /etc/jobcarbon)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    doctor = commands.add_parser("doctor", help="report what this node can measure, and why not")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(run=_doctor)

    agent = commands.add_parser("agent", help="run the node agent (normally started by the prolog)")
    agent.add_argument("--persistent", action="store_true", help="keep running when no job is left")
    agent.set_defaults(run=_agent)

    records = commands.add_parser("records", help="show finished-job records waiting in this node's outbox")
    records.add_argument("job", nargs="?", type=_job_id, help="a job id (default: all)")
    records.add_argument("--json", action="store_true", help="print the records as JSON")
    records.set_defaults(run=_records)

    accounting.add_commands(commands)
    query.add_commands(commands)
    report.add_commands(commands)
    parser.set_defaults(commands=frozenset(commands.choices))
    return parser


def _job_id(text: str) -> int:
    if not text.isdigit() or len(text) > 10:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a job id (digits only)")
    return int(text)


GLOBAL_FLAGS = ("-h", "--help", "--version")


def with_default_command(argv: list[str], commands: frozenset[str]) -> list[str]:
    """`jobcarbon 123 [...]` means `jobcarbon show 123 [...]`: insert `show` where the command belongs."""
    i = 0
    while i < len(argv) and (argv[i] == "--config" or argv[i].startswith("--config=")):
        i += 1 if "=" in argv[i] else 2
    if i >= len(argv) or argv[i] in commands or argv[i] in GLOBAL_FLAGS:
        return argv
    # "--" keeps a dash-led argument ("-1") a job id for show to refuse in one line, not an option.
    return [*argv[:i], "show", *(["--"] if argv[i].startswith("-") else []), *argv[i:]]


def main(argv: list[str] | None = None) -> int:
    from slurm_plugin.config import ConfigError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(with_default_command(argv, parser.get_default("commands")))
    if args.config:
        import os

        os.environ["JOBCARBON_CONFIG"] = str(Path(args.config))
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"jobcarbon: {exc}", file=sys.stderr)
        return 2
    except accounting.CommandError as exc:
        return accounting.report_error(exc)
    except BrokenPipeError:
        # The reader went away (`jobcarbon jobs | head`): stop quietly, as other tools do; output
        # still buffered goes to /dev/null so the interpreter's exit does not fail again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
