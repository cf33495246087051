"""Deliver a node's outbox to the database right after a job ends, in a short-lived process.

The agent (or the epilog, when it had to finalise a job itself) starts this detached, so neither
waits for the database nor carries its imports; a timer runs it too, for records kept while the
database was away on a node where no job ends. One deliverer runs at a time per node; it ingests
every record it finds, computing footprints, and leaves in the outbox whatever it cannot store.
"""

from __future__ import annotations

import os

from slurm_plugin import config as config_module
from slurm_plugin import outbox
from slurm_plugin.eventlog import EventLog
from slurm_plugin.safefile import lock_file

DELIVER_TIMEOUT_S = 2.0  # a node's wait for a busy database; the next delivery or ingest catches up
ROUNDS = 5  # records finalised while we ran are picked up by another pass, not left for the timer


def deliver_outbox(config: config_module.Config, log: EventLog) -> int:
    """Ingest the outbox (job records, running snapshots, the node ledger's records) until it is empty or
    the database is unavailable; returns job parts stored. An empty outbox opens no session: a timer may
    run this on every node (config/jobcarbon-deliver.timer)."""
    from slurm_plugin.accounting import (
        join,
        snapshots,  # the database stack: imported once we hold the lock
    )
    from slurm_plugin.accounting.ingest import ingest_outbox
    from slurm_plugin.accounting.node_ingest import ingest_node_outbox
    from slurm_plugin.storage.store import Store, StoreError

    paths = config.paths
    if not (
        outbox.pending(paths.outbox) or outbox.waiting(paths.outbox) or outbox.pending_node(paths.outbox)
    ):
        return 0
    timeout_s = min(config.database.busy_timeout_s, DELIVER_TIMEOUT_S)
    try:
        store = Store.open(config.database.url, timeout_s, False, config.database.password_file)
    except StoreError as exc:
        log("info", f"records stay in {config.paths.outbox} for `jobcarbon ingest`: {exc}")
        return 0
    stored = 0
    try:
        for _ in range(ROUNDS):
            if not outbox.pending(config.paths.outbox):
                break
            result = ingest_outbox(
                store,
                config.paths.outbox,
                config.paths.quarantine,
                join.accountant(store, config.accounting),
                log,
            )
            stored += result.stored
            if result.kept:
                break
        try:
            snapshots.ingest_snapshots(store, config.paths.outbox, config.accounting, log)
            ledger = ingest_node_outbox(store, config.paths.outbox, config.paths.quarantine, log)
            if ledger.stored:
                log("info", f"delivered {ledger.stored} node ledger record(s) to the database")
        except StoreError as exc:
            log("info", f"running snapshots and node records stay in the outbox: {exc}")
    finally:
        store.close()
    return stored


def main() -> int:
    os.closerange(3, 256)
    config = config_module.load()
    log = EventLog("delivery", config.paths.log_file)
    if not config.database.deliver_from_nodes:
        return 0
    lock = lock_file(config.paths.spool / "delivery.lock", 0.0)
    if lock is None:
        return 0  # another deliverer is running and will see our records on its next pass
    try:
        stored = deliver_outbox(config, log)
    finally:
        os.close(lock)
    if stored:
        log("info", f"delivered {stored} record(s) to the database")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
