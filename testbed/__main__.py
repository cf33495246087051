"""`python3 -m testbed up|down|status|submit-demo|reset-controller|postgres|vm`: drive the single-node
Slurm test bed, start the loopback PostgreSQL server the PostgreSQL backend's tests and benchmarks use,
or drive the three-node Slurm 24.11 cluster in virtual machines (`vm build|up|down|status|run|collect`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from testbed import postgres, vm
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
    reset = commands.add_parser(
        "reset-controller",
        help="clear slurmctld's state and restart it: job ids start again (Slurm reuses ids)",
    )
    reset.add_argument("--first-job-id", type=int, required=True, help="FirstJobId: the next job's id")
    reset.add_argument("--timeout", type=float, default=60, help="seconds to wait for an idle node")
    pg = commands.add_parser("postgres", help="start the loopback PostgreSQL test server")
    pg.add_argument("--install-packages", action="store_true", help="apt-get PostgreSQL if missing")
    add_vm_parser(commands)
    return parser


def add_vm_parser(commands: argparse._SubParsersAction) -> None:
    """`vm ...`: the virtual-machine bed (testbed/vm/)."""
    bed = commands.add_parser("vm", help="the three-node Slurm 24.11 cluster in VMs (testbed/vm/)")
    bed.add_argument("--state", type=Path, default=vm.DEFAULT_STATE, help="overlays, sockets, logs")
    actions = bed.add_subparsers(dest="vm_command", required=True)
    build = actions.add_parser("build", help="build (or reuse) the node image; print its directory")
    up = actions.add_parser("up", help="build the image if needed and boot the three nodes")
    for sub in (build, up):
        sub.add_argument("--wheels", type=Path, default=vm.WHEELS, help="wheelhouse (packaging/fetch-wheels)")
    up.add_argument("--timeout", type=float, default=600, help="seconds to wait for idle nodes")
    actions.add_parser("down", help="power the nodes off")
    actions.add_parser("status", help="nodes, sinfo and squeue")
    actions.add_parser("collect", help="copy the nodes' records to the host and ingest them")
    run = actions.add_parser("run", help="run a command as root on a node: vm run [--node vm2] -- CMD")
    run.add_argument("--node", default=vm.NODES[0].name, choices=[node.name for node in vm.NODES])
    run.add_argument("words", nargs=argparse.REMAINDER, help="the command (after --)")


def cmd_vm(args: argparse.Namespace) -> int:
    """One `vm` action; `run` exits with the command's status."""
    bed = vm.VmCluster(args.state)
    started = time.monotonic()
    if args.vm_command == "build":
        print(vm.build_image(args.wheels).directory)
    elif args.vm_command == "up":
        bed.up(vm.build_image(args.wheels), args.timeout)
        print(f"up in {time.monotonic() - started:.0f} s: state in {bed.state}")
        print(f"export JOBCARBON_CONFIG={bed.jobcarbon_config}  # the bed's database, after `vm collect`")
    elif args.vm_command == "down":
        bed.down()
    elif args.vm_command == "status":
        print(bed.status())
    elif args.vm_command == "collect":
        print(f"ingested {len(bed.ingest())} record(s) into {bed.database}")
    else:
        words = args.words[1:] if args.words[:1] == ["--"] else args.words
        node = next(node for node in vm.NODES if node.name == args.node)
        done = bed.run(node, " ".join(words))
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done.returncode
    return 0


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
        elif args.command == "reset-controller":
            Cluster(scratch=args.scratch).reset_controller(args.first_job_id, args.timeout)
            print(f"controller reset: the next job is {args.first_job_id}")
        elif args.command == "postgres":
            cmd_postgres(args)
        elif args.command == "vm":
            return cmd_vm(args)
        else:
            cmd_submit_demo(args)
    except (ClusterError, postgres.PostgresError, OSError) as error:
        print(f"testbed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
