"""`python3 -m testbed up|down|status|submit-demo|postgres`: drive the single-node Slurm test bed, or
start the loopback PostgreSQL server the PostgreSQL backend's tests and benchmarks use."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from testbed import postgres
from testbed.hardware import SimulatedHardware
from testbed.host import REPO_ROOT, ClusterError, ensure_packages, ensure_user, install_hooks
from testbed.slurm import DEFAULT_SCRATCH, Cluster

DEMO_SCRIPT = """#!/bin/sh
# Busy one CPU for {seconds} s, like a small compute job.
end=$(( $(date +%s) + {seconds} ))
while [ "$(date +%s)" -lt "$end" ]; do :; done
echo "demo job $SLURM_JOB_ID ran on $(hostname -s) with GPUs ${{CUDA_VISIBLE_DEVICES:-none}}"
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per action, all sharing --scratch."""
    parser = argparse.ArgumentParser(prog="python3 -m testbed", description=__doc__)
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH, help="state directory")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start (or restart) the cluster")
    up.add_argument("--install-packages", action="store_true", help="apt-get Slurm if missing")
    up.add_argument("--prolog", type=Path, help="prolog script (default: jobcarbon's, if present)")
    up.add_argument("--epilog", type=Path, help="epilog script (default: jobcarbon's, if present)")
    up.add_argument("--no-hooks", action="store_true", help="run without prolog and epilog")
    up.add_argument("--timeout", type=float, default=60, help="seconds to wait for an idle node")
    commands.add_parser("down", help="cancel jobs and stop the cluster")
    commands.add_parser("status", help="show daemons, node and queue")
    demo = commands.add_parser("submit-demo", help="submit a short CPU+GPU job as a demo user")
    demo.add_argument("--user", default="demo")
    demo.add_argument("--account", default="physics")
    demo.add_argument("--gpus", type=int, default=1)
    demo.add_argument("--cpus", type=int, default=1)
    demo.add_argument("--seconds", type=int, default=5)
    demo.add_argument("--no-wait", action="store_true", help="print the job id and return")
    pg = commands.add_parser("postgres", help="start the loopback PostgreSQL test server")
    pg.add_argument("--install-packages", action="store_true", help="apt-get PostgreSQL if missing")
    return parser


def cmd_postgres(args: argparse.Namespace) -> None:
    """Set up (once) and start the server; say how to reach it."""
    if args.install_packages:
        postgres.ensure_packages()
    server = postgres.ensure_server()
    print(f"PostgreSQL {server.version} on loopback: {server.url} (password in {server.password_file})")


def choose_hooks(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """Explicit --prolog/--epilog, else jobcarbon's hooks installed for this test bed."""
    if args.no_hooks or args.prolog or args.epilog:
        return (None, None) if args.no_hooks else (args.prolog, args.epilog)
    hardware = SimulatedHardware(args.scratch)
    hardware.start()
    hardware.clear_job_files()
    config = hardware.write_jobcarbon_config(Cluster(scratch=args.scratch).jobcarbon_config)
    print(f"simulated RAPL and 4 fake GPUs running; jobcarbon config: {config}")
    return install_hooks(args.scratch, sys.executable, config, pythonpath=str(REPO_ROOT))


def cmd_up(args: argparse.Namespace) -> None:
    """Start the cluster and say how long it took."""
    if args.install_packages:
        ensure_packages()
    prolog, epilog = choose_hooks(args)
    cluster = Cluster(scratch=args.scratch, prolog=prolog, epilog=epilog)
    started = time.monotonic()
    cluster.up(timeout_s=args.timeout)
    print(f"up in {time.monotonic() - started:.1f} s (prolog={prolog}, epilog={epilog})")
    print(f"export SLURM_CONF={cluster.conf}")


def cmd_submit_demo(args: argparse.Namespace) -> None:
    """Submit the demo job and, unless --no-wait, report how it ended."""
    cluster = Cluster(scratch=args.scratch)
    ensure_user(args.user)
    gres = f"gpu:{args.gpus}" if args.gpus else None
    script = DEMO_SCRIPT.format(seconds=args.seconds)
    job_id = cluster.submit(script, user=args.user, account=args.account, gres=gres, cpus=args.cpus)
    print(f"submitted job {job_id} as {args.user} (account {args.account}, {gres or 'no GPU'})")
    if not args.no_wait:
        result = cluster.wait_finished(job_id, timeout_s=args.seconds + 120)
        print(f"job {job_id}: {result.state}, exit code {result.exit_code}")


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; test-bed errors become one line on stderr and exit code 1."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            cmd_up(args)
        elif args.command == "down":
            Cluster(scratch=args.scratch).down()
            SimulatedHardware(args.scratch).stop()
        elif args.command == "status":
            print(Cluster(scratch=args.scratch).status())
        elif args.command == "postgres":
            cmd_postgres(args)
        else:
            cmd_submit_demo(args)
    except (ClusterError, postgres.PostgresError, OSError) as error:
        print(f"testbed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
