"""The accounting commands of `jobcarbon`: db upgrade, ingest, intensity sync/show, recompute, rollup.

Each parses nothing itself: it takes parsed arguments, calls the library and renders the result.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from slurm_plugin.cli import output
from slurm_plugin.config import Config
from slurm_plugin.errors import JobcarbonError, UsageError
from slurm_plugin.eventlog import EventLog
from slurm_plugin.intensity import IntensityPoint
from slurm_plugin.times import iso_z, utc

INTENSITY_SCHEMA = "jobcarbon/intensity/1"
INTENSITY_COLUMNS = ("start", "end", "g_per_kwh", "source", "scope", "forecast", "estimated")


@contextmanager
def _store(settings: Config, create: bool = False) -> Iterator:
    """The configured database, closed whatever happens; its errors reach the boundary unchanged."""
    from slurm_plugin.storage.store import Store

    database = settings.database
    store = Store.open(database.url, database.busy_timeout_s, create, database.password_file)
    try:
        yield store
    finally:
        store.close()


def db_upgrade(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.storage import migrations

    with _store(settings, create=True) as store:
        version = migrations.upgrade(store.db)
    print(f"database {settings.database.url}: schema version {version}")
    return 0


def db_grant(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.storage import dialect, roles

    if not (args.writer or args.reader):
        raise UsageError("name a role: --writer ROLE (compute nodes) and/or --reader ROLE (queries)")
    with _store(settings, create=True) as store:
        if store.db.name != dialect.POSTGRESQL:
            raise JobcarbonError("db grant is for PostgreSQL: an SQLite file is guarded by its permissions")
        for statement in roles.grant(store.db, args.writer, args.reader):
            print(statement)
    return 0


def db_migrate(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.storage import transfer

    with _store(settings, create=True) as target:
        copied = transfer.copy_into(args.source, target, lambda table, rows: print(f"{table}: {rows} rows"))
    print(f"copied {copied['jobs']} jobs into {settings.database.url}")
    return 0


def ingest(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.accounting import join, snapshots
    from slurm_plugin.accounting.ingest import ingest_outbox
    from slurm_plugin.accounting.node_ingest import ingest_node_outbox

    outbox = args.outbox or settings.paths.outbox
    if not outbox.is_dir():
        raise JobcarbonError(f"outbox {outbox} is not a directory (--outbox, or paths.outbox in the config)")
    log = EventLog("ingest", settings.paths.log_file)
    with _store(settings) as store:
        result = ingest_outbox(
            store,
            outbox,
            settings.paths.quarantine,
            join.accountant(store, settings.accounting),
            log,
        )
        running = (
            snapshots.ingest_snapshots(store, outbox, settings.accounting, log) if not result.kept else 0
        )
        nodes = ingest_node_outbox(store, outbox, settings.paths.quarantine, log)
    print(
        f"{outbox}: {result.stored} stored, {result.duplicates} duplicates, "
        f"{result.quarantined} quarantined, {result.kept} kept"
        + (f", {result.conflicts} conflicts" if result.conflicts else "")
        + (f", {running} running-job snapshots" if running else "")
        + (f", {nodes.stored} node records" if nodes.stored else "")
    )
    return 1 if result.kept or nodes.kept else 0


def intensity_sync(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.intensity.sync import sync

    if not settings.intensity.providers:
        raise JobcarbonError("no intensity providers configured (intensity.providers)")
    log = EventLog("intensity", settings.paths.log_file)
    with _store(settings) as store:
        results = sync(store, settings, log=log)
    for result in results:
        state = "ok" if result.ok else f"FAILED: {result.error}"
        span = f"{_iso(result.start)} .. {_iso(result.end)}"
        print(f"{result.provider} {result.zone}: {result.points} points {span} {state}")
        for note in result.notes:
            print(f"  note: {note}")
    return 0 if all(r.ok for r in results) else 1


def intensity_show(args: argparse.Namespace, settings: Config) -> int:
    end = args.end or dt.datetime.now(dt.UTC)
    start = args.start or end - dt.timedelta(days=1)
    with _store(settings) as store:
        points = store.intensity(args.zone, start, end)
    if not points and args.format == "table":  # JSON and CSV say "none" themselves: empty, exit 0
        raise JobcarbonError(
            f"no intensity stored for zone {args.zone} between {_iso(start)} and {_iso(end)}"
        )
    rows = [
        [_iso(p.start), _iso(p.end), p.g_per_kwh, p.source, p.scope, p.forecast, p.estimated] for p in points
    ]
    document = {
        "schema": INTENSITY_SCHEMA,
        "zone": args.zone,
        "start": _iso(start),
        "end": _iso(end),
        "points": [_point_dict(p) for p in points],
    }
    headers = ["start (UTC)", "end (UTC)", "gCO2e/kWh", "source", "scope", "flags"]
    table = [[*row[:5], _flags(p)] for row, p in zip(rows, points, strict=True)]
    output.emit(
        output.Result(
            document,
            table=lambda: output.table_text(headers, table),
            csv=lambda: output.csv_text(INTENSITY_COLUMNS, rows),
        ),
        args.format,
    )
    return 0


def rollup(args: argparse.Namespace, settings: Config) -> int:
    """Rebuild the monthly rollups of the months changed since their last build, one transaction each,
    then the node ledger's."""
    from slurm_plugin.reports import ledger
    from slurm_plugin.storage import rollups

    with _store(settings) as store:
        for month in rollups.changed_months(store.db):
            with store.transaction():
                rollups.build(store.db, month)
            print(f"{month}: rolled up")
        for month in ledger.roll_up(store, ledger.settings(settings)):
            print(f"{month}: node ledger rolled up")
    return 0


def recompute(args: argparse.Namespace, settings: Config) -> int:
    from slurm_plugin.accounting import join

    if args.by not in join.CHANGE_GROUPS:
        raise UsageError(f"--by {args.by[:40]!r}: choose one of {', '.join(join.CHANGE_GROUPS)}")
    with _store(settings) as store:
        result = join.recompute(store, settings.accounting, args.since, args.by)
    print(f"{result.checked} parts checked, {result.changed} footprints updated (previous versions kept)")
    if result.changes:
        print(_changes_table(result.changes, args.by))
    return 0


def _changes_table(changes: dict, by: str) -> str:
    """Per month, cluster and group: the footprints whose figures moved, kg CO2e and facility kWh before
    and after, and the change in percent."""
    header = (
        "month",
        "cluster",
        by,
        "footprints",
        "kg CO2e before",
        "after",
        "change",
        "facility kWh before",
        "after",
    )
    rows: list[tuple] = []
    for (month, cluster, group), c in sorted(changes.items(), key=lambda item: tuple(map(str, item[0]))):
        percent = (c.co2e_g_after - c.co2e_g_before) / c.co2e_g_before * 100 if c.co2e_g_before else None
        rows.append(
            (
                month, cluster, "(none)" if group is None else str(group), str(c.footprints),
                c.co2e_g_before / 1000, c.co2e_g_after / 1000,
                "new" if percent is None else f"{percent:+.2f}%",
                c.facility_j_before / 3.6e6, c.facility_j_after / 3.6e6,
            )
        )  # fmt: skip
    return output.table_text(header, rows, floatfmt=".6f")


def _point_dict(point: IntensityPoint) -> dict:
    data = asdict(point)
    return {k: (_iso(v) if isinstance(v, dt.datetime) else v) for k, v in data.items()}


def _flags(point: IntensityPoint) -> str:
    return ",".join(name for name in ("forecast", "estimated") if getattr(point, name)) or "-"


def _iso(moment: dt.datetime) -> str:
    return iso_z(moment, "minutes")


def utc_datetime(text: str) -> dt.datetime:
    """An argparse type: ISO date or date-time (UTC unless it names an offset), "today" or "yesterday"."""
    days_back = {"today": 0, "yesterday": 1}.get(text)
    if days_back is not None:
        midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - dt.timedelta(days=days_back)
    try:
        return utc(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an ISO date or date-time") from None


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the accounting subcommands on the top-level parser."""
    db = commands.add_parser("db", help="database maintenance").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="create the database or migrate it to this version").set_defaults(
        run=db_upgrade
    )
    grant = db.add_parser("grant", help="PostgreSQL: grant roles their privileges (idempotent)")
    grant.add_argument("--writer", metavar="ROLE", help="compute nodes' role: deliver records only")
    grant.add_argument("--reader", metavar="ROLE", help="query service's role: read only")
    grant.set_defaults(run=db_grant)
    migrate = db.add_parser("migrate", help="copy an SQLite database into the configured PostgreSQL one")
    migrate.add_argument("--from", dest="source", required=True, metavar="URL", help="sqlite:////path.db")
    migrate.set_defaults(run=db_migrate)

    ingest_parser = commands.add_parser(
        "ingest", help="move finished-job records from an outbox into the database"
    )
    ingest_parser.add_argument("--outbox", type=_path, help="outbox directory (default: paths.outbox)")
    ingest_parser.set_defaults(run=ingest)

    intensity = commands.add_parser("intensity", help="grid carbon intensity series")
    sub = intensity.add_subparsers(dest="intensity", required=True)
    sub.add_parser("sync", help="fetch the configured series (run where there is internet)").set_defaults(
        run=intensity_sync
    )
    show = sub.add_parser("show", help="print the stored series of a zone")
    show.add_argument("--zone", required=True)
    show.add_argument("--start", type=utc_datetime, help="UTC start (default: a day before --end)")
    show.add_argument("--end", type=utc_datetime, help="UTC end (default: now)")
    output.add_format_option(show, INTENSITY_SCHEMA)
    show.set_defaults(run=intensity_show)

    again = commands.add_parser("recompute", help="recompute footprints with the intensity data now stored")
    again.add_argument("--since", type=utc_datetime, help="only parts that ended at or after this UTC date")
    again.add_argument(
        "--by", default="account", help="group the changes by account (default), user, group or partition"
    )
    again.set_defaults(run=recompute)
    commands.add_parser(
        "rollup", help="rebuild the monthly rollups of changed months (reports read them; run it daily)"
    ).set_defaults(run=rollup)


def _path(text: str) -> Path:
    return Path(text)
