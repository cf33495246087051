"""Read finished-job records back from a node's outbox, for `jobcarbon records` and the ingest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def find(outbox: Path, job_id: int | None = None) -> list[dict[str, Any]]:
    """Records in the outbox, optionally of one job, oldest first; unreadable files are skipped."""
    pattern = f"*_{job_id}_*_*.json" if job_id is not None else "*.json"
    records = []
    for path in sorted(outbox.glob(pattern)):
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if job_id is None or document.get("job_id") == job_id:
            records.append(document)
    return sorted(records, key=lambda r: (r.get("start", ""), r.get("node", "")))


def _kj(part: dict[str, Any] | None) -> str:
    return "-" if not part else f"{part['joules'] / 1000:.2f} kJ ({part['method']})"


def render(records: list[dict[str, Any]]) -> str:
    """A short human summary per record."""
    blocks = []
    for r in records:
        energy = r["energy"]
        lines = [
            f"job {r['job_id']} (run {r['restart_count']}) on {r['node']}  user {r['user']}  "
            f"account {r.get('account') or '-'}  partition {r.get('partition') or '-'}",
            f"  {r['start']} -> {r['end']}  ({r['elapsed_s']:.0f} s)  status {r['status']}  "
            f"coverage {r['coverage']['fraction']:.0%}",
            f"  cpu  {_kj(energy['cpu'])}   dram {_kj(energy['dram'])}   gpu {_kj(energy['gpu'])}",
            f"  total {energy['total_joules'] / 1000:.2f} kJ = {energy['total_joules'] / 3.6e6:.4f} kWh",
        ]
        for gpu in r.get("gpus", []):
            lines.append(f"  gpu {gpu['uuid']} {gpu.get('model') or ''}")
        lines += [f"  partial: {reason}" for reason in r.get("partial_reasons", [])]
        lines += [f"  note: {note}" for note in r.get("notes", [])]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
