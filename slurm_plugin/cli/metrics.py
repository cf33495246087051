"""`jobcarbon metrics serve|show`: the cluster exporter for Prometheus (docs/monitoring.md)."""

from __future__ import annotations

import argparse
import sys

from slurm_plugin.config import Config


def serve(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.query import cluster_metrics

    def ready(where: str) -> None:
        print(f"jobcarbon metrics: serving http://{where}/metrics", flush=True)

    cluster_metrics.serve(settings, args.listen or settings.metrics.listen, ready)
    return 0


def show(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.query import cluster_metrics

    sys.stdout.write(cluster_metrics.scrape(settings))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `metrics serve` and `metrics show` on the top-level parser."""
    metrics = commands.add_parser("metrics", help="cluster metrics from the database for Prometheus")
    sub = metrics.add_subparsers(dest="metrics", required=True)
    server = sub.add_parser("serve", help="answer GET /metrics (an admin endpoint: docs/monitoring.md)")
    server.add_argument("--listen", metavar="HOST:PORT", help="address to bind (default: metrics.listen)")
    server.set_defaults(run=serve, context="metrics")
    sub.add_parser("show", help="print what a scrape would return").set_defaults(run=show)
