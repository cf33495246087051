"""The node ledger's table (version 13): node records stored interval by interval, each exactly once.

An interval is keyed (cluster, node, t0_s) and carries its content digest (`node_record.interval_digest`),
so `add` says, per interval, whether it was stored now or was there already and with which digest: the
ingester tells a redelivery from a conflict by that, as for job parts. PostgreSQL's writer role stores
through `writer_functions` (it reads no other column); SQLite runs the same statements in one transaction.
"""

from __future__ import annotations

import json
import time
from typing import Any

from slurm_plugin import node_record
from slurm_plugin.storage import dialect, schema, writer_functions
from slurm_plugin.storage.store import Store

COMPONENTS = node_record.COMPONENTS


def rows(document: dict[str, Any], received_at_s: float) -> list[dict[str, Any]]:
    """The table rows of a checked node record, one per interval."""
    head = {
        "cluster": document["cluster"],
        "node": document["node"],
        "boot_id": document["boot_id"],
        "ncpus": document["ncpus"],
    }
    found = []
    for interval in document["intervals"]:
        row = {**head, "received_at_s": received_at_s}
        row["content_sha256"] = node_record.interval_digest(document, interval)
        for name in ("t0_s", "t1_s", "jobs_core_s", "unmeasured_s"):
            row[name] = interval[name]
        for component in COMPONENTS:
            row[f"{component}_j"] = interval[f"{component}_j"]
            row[f"jobs_{component}_j"] = interval[f"jobs_{component}_j"]
        row["cpu_method"], row["dram_method"] = interval["cpu_method"], interval["dram_method"]
        row["job_shares_json"] = json.dumps(interval["job_shares"], separators=(",", ":"))
        row["notes_json"] = json.dumps(interval["notes"], ensure_ascii=False)
        found.append(row)
    return found


def add(store: Store, document: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Store a checked node record's intervals in one transaction: per interval, its digest and None
    where it was stored now, else the stored interval's digest (equal: a redelivery)."""
    new = rows(document, time.time())
    db = store.db
    if db.name == dialect.POSTGRESQL:
        with db.errors():
            answer = db.execute(
                writer_functions.CALL_ADD_NODE_INTERVALS, {"rows": json.dumps(new)}
            ).fetchone()
        stored: list[str | None] = list(answer[0])
    else:
        stored = []
        with store.transaction():
            for row in new:
                inserted = db.execute(schema.INSERT_NODE_INTERVAL, row).fetchone()
                found = None if inserted else db.execute(schema.NODE_INTERVAL_DIGEST, row).fetchone()
                stored.append(None if found is None else str(found[0]))
    return [(row["content_sha256"], digest) for row, digest in zip(new, stored, strict=True)]
