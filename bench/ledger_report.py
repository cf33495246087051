"""What the node ledger adds to `jobcarbon report`: a month of 300 s intervals for NODES nodes (half of
each node's intervals shared by two jobs), and the time `reports.ledger.section` takes on SQLite: the
sums (one GROUP BY) and the proportional policy (every shared interval's job shares, in Python); then
`jobcarbon rollup`'s ledger rollup of the month, and the section again from it (the same figures).

    python3 -m bench.ledger_report [--nodes N]      (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from slurm_plugin.reports import ledger
from slurm_plugin.storage import Store, readonly, schema

START = 1767225600.0  # 2026-01-01T00:00:00Z
INTERVAL_S = 300.0
PER_MONTH = int(31 * 86400 / INTERVAL_S)
FIXED = {"cluster": "hpc", "boot_id": None, "ncpus": 64, "cpu_j": 60000.0, "cpu_method": "measured",
         "dram_j": 6000.0, "dram_method": "measured", "gpu_j": None, "jobs_gpu_j": 0.0, "unmeasured_s": 0.0,
         "notes_json": "[]", "content_sha256": "x", "received_at_s": 0.0}  # fmt: skip
JOB = """INSERT INTO jobs (cluster, job_id, restart_count, user_name, uid, gid, account, partition, start_s,
    end_s) VALUES ('hpc', ?, 0, 'u', 1, 1, ?, 'p', ?, ?)"""


def _fill(url: str, nodes: int) -> int:
    """Insert the intervals and the jobs they name (one account per 10 jobs); the row count."""
    store = Store.open(url, 30.0)
    rows = []
    for node in range(nodes):
        for index in range(PER_MONTH):
            t0 = START + index * INTERVAL_S
            busy = index % 2 == 0
            job = 1 + (node * PER_MONTH + index) // 24  # a job runs two hours on a node
            shares = [[job, 0, 30000.0, 9600.0], [job + 10**7, 0, 10000.0, 2400.0]] if busy else []
            jobs_j = (38000.0, 2000.0, 12000.0) if busy else (0.0, 0.0, 0.0)
            rows.append(
                {**FIXED, "node": f"n{node:04d}", "t0_s": t0, "t1_s": t0 + INTERVAL_S,
                 "jobs_cpu_j": jobs_j[0], "jobs_dram_j": jobs_j[1], "jobs_core_s": jobs_j[2],
                 "job_shares_json": json.dumps(shares)}
            )  # fmt: skip
    with store.transaction():
        store.db.executemany(schema.INSERT_NODE_INTERVAL.replace(" RETURNING t0_s", ""), rows)
        jobs = {(s[0], f"acct{s[0] % 50}") for r in rows for s in json.loads(r["job_shares_json"])}
        store.db.executemany(JOB, [(job, account, START, START + 31 * 86400) for job, account in jobs])
    store.close()
    return len(rows)


def _sections(reader: readonly.Reader) -> tuple[dict[str, float], dict]:
    """The section under each weight: its time, and the last section."""
    document = {"metadata": {"months": ["2026-01"], "by": "account"}, "totals": [], "rows": []}
    timings = {}
    for share_by in ("energy", "core_hours"):
        started = time.perf_counter()
        section = ledger.section(reader, document, ledger.Settings("UTC", share_by, 1.2))
        timings[share_by] = time.perf_counter() - started
    return timings, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jcledger.") as scratch:
        url = f"sqlite:///{Path(scratch) / 'jobcarbon.db'}"
        started = time.perf_counter()
        count = _fill(url, args.nodes)
        filled_s = time.perf_counter() - started
        reader = readonly.Reader.open(url)
        timings, section = _sections(reader)
        store = Store.open(url, 30.0)
        started = time.perf_counter()
        ledger.roll_up(store, ledger.Settings("UTC", pue=1.2))
        rollup_s = time.perf_counter() - started
        store.close()
        rolled, rolled_section = _sections(reader)
        reader.close()
    assert rolled_section == section
    (total,) = section["totals"]
    print(
        json.dumps(
            {
                "nodes": args.nodes,
                "intervals": count,
                "fill_s": round(filled_s, 2),
                "section_s": {k: round(v, 3) for k, v in timings.items()},
                "per_million_intervals_s": round(timings["energy"] / count * 1e6, 2),
                "rollup_build_s": round(rollup_s, 2),
                "rolled_section_s": {k: round(v, 4) for k, v in rolled.items()},
                "remainder_kwh": total["remainder_kwh"],
                "groups": len(section["shares"]),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
