"""The node commands of `jobcarbon`: doctor, agent and records."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from slurm_plugin import figures
from slurm_plugin.cli import output
from slurm_plugin.errors import JobcarbonError

if TYPE_CHECKING:
    from slurm_plugin.cli.doctor import Check
    from slurm_plugin.config import Config, ConfigError

DOCTOR_SCHEMA = "jobcarbon/doctor/1"
RECORDS_SCHEMA = "a list of jobcarbon/job-node-record/1"


def doctor(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.cli import doctor as checks

    return _report_checks(args.format, checks.run(settings))


def doctor_without_config(args: argparse.Namespace, problem: ConfigError) -> int:
    """A configuration that does not load is doctor's first finding, not a reason to say nothing."""
    from slurm_plugin.cli.doctor import Check

    return _report_checks(args.format, [Check("config", "error", str(problem))])


def _report_checks(fmt: str, checks: list[Check]) -> int:
    rows = [(c.name, c.status, c.detail) for c in checks]
    output.emit(
        output.Result(
            {"schema": DOCTOR_SCHEMA, "checks": [asdict(c) for c in checks]},
            table=lambda: output.aligned(rows),
            csv=lambda: output.csv_text(("name", "status", "detail"), rows),
        ),
        fmt,
    )
    return 1 if any(c.status == "error" for c in checks) else 0


def agent(args: argparse.Namespace, settings: Config) -> int:
    """Become the node agent, told its configuration file explicitly (it is a process of its own)."""
    from slurm_plugin.defaults import CONFIG_ENV

    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    if settings.source is not None:
        env[CONFIG_ENV] = str(settings.source)
    argv = [sys.executable, "-m", "slurm_plugin.node.agent", *(["--persistent"] if args.persistent else [])]
    os.execve(sys.executable, argv, env)  # noqa: S606 - a fixed argv, no shell
    return 1  # not reached: execve replaces this process or raises OSError


def records(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin import outbox

    found = outbox.find(settings.paths.outbox, args.job)
    if not found:
        where = f"job {args.job}" if args.job else "any job"
        raise JobcarbonError(f"no record for {where} in {settings.paths.outbox}")
    output.emit(output.Result(found, table=lambda: _records_table(found)), args.format)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register doctor, agent and records on the top-level parser."""
    check = commands.add_parser("doctor", help="report what this node can measure, and why not")
    output.add_format_option(check, DOCTOR_SCHEMA)
    check.set_defaults(run=doctor, on_config_error=doctor_without_config)

    serve = commands.add_parser("agent", help="run the node agent (normally started by the prolog)")
    serve.add_argument("--persistent", action="store_true", help="keep running when no job is left")
    serve.set_defaults(run=agent)

    waiting = commands.add_parser("records", help="show finished-job records waiting in this node's outbox")
    waiting.add_argument("job", nargs="?", type=job_id, help="a job id (default: all)")
    output.add_format_option(waiting, RECORDS_SCHEMA, csv=False)
    waiting.set_defaults(run=records)


def job_id(text: str) -> int:
    """An argparse type: a raw Slurm job id."""
    if not text.isdigit() or len(text) > 10:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a job id (digits only)")
    return int(text)


def _energy_line(energy: dict[str, Any]) -> str:
    """The record's components and total in one unit (the total's), each with how it was obtained."""
    names = ("cpu", "dram", "gpu")
    parts = [energy[name]["joules"] if energy[name] else None for name in names]
    unit, cells = figures.unit_column([*parts, energy["total_joules"]], figures.ENERGY_UNITS)
    shown = [
        f"{name} {cell}" + (f" ({energy[name]['method']})" if energy[name] else "")
        for name, cell in zip(names, cells, strict=False)
    ]
    return f"  energy ({unit}): " + "   ".join(shown) + f"   total {cells[-1]}"


def _records_table(records: list[dict[str, Any]]) -> str:
    """A short human summary per record (`jobcarbon records`)."""
    blocks = []
    for r in records:
        lines = [
            f"job {r['job_id']} (run {r['restart_count']}) on {r['node']}  user {r['user']}  "
            f"account {r.get('account') or '-'}  partition {r.get('partition') or '-'}",
            f"  {r['start']} -> {r['end']}  ({r['elapsed_s']:.0f} s)  status {r['status']}  "
            f"coverage {r['coverage']['fraction']:.0%}",
            _energy_line(r["energy"]),
        ]
        for gpu in r.get("gpus", []):
            lines.append(f"  gpu {gpu['uuid']} {gpu.get('model') or ''}")
        lines += [f"  partial: {reason}" for reason in r.get("partial_reasons", [])]
        lines += [f"  note: {note}" for note in r.get("notes", [])]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
