"""The agent's node-ledger loop: the ledger's closed intervals written as node records to the outbox.

Intervals close as the sampler ticks (`NodeLedger`); every `ledger.record_interval_s`, and when the
agent stops, those not written yet go out as one node record (outbox/node/, `node_record`). A record
the disk refuses stays in memory and is tried again with a backoff, so nothing closed is lost while the
agent lives. `ledger.json` in the spool keeps where the last record ended and under which boot, so the
next agent's first interval says how long the ledger has no figures for, and why (a reboot, or no
agent): a gap is flagged, never filled, and a counter reset (a new boot) is never a negative delta.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from slurm_plugin import node_record, outbox
from slurm_plugin.config import Config
from slurm_plugin.node.fastpath import boot_id
from slurm_plugin.node.jobenv import hostname
from slurm_plugin.node.ledger import NodeLedger
from slurm_plugin.safefile import atomic_write, read_nofollow
from slurm_plugin.times import iso_z

STATE_NAME = "ledger.json"
RETRY_FIRST_S = 1.0  # a record the outbox refused is tried again after this, doubling up to RETRY_MAX_S
RETRY_MAX_S = 60.0

Log = Callable[[str, str], None]


class LedgerWriter:
    """Keeps the node ledger for the agent's lifetime and writes its records (`step`, `close`)."""

    def __init__(self, config: Config, log: Log, ncpus: int):
        self.config, self.log, self.ncpus = config, log, ncpus
        self.state_path = config.paths.spool / STATE_NAME
        self.boot_id = boot_id()
        state = self._state()
        # The names the node's job records carry: configured, else Slurm's as the last job gave them.
        self.cluster = config.cluster or str(state.get("cluster") or "default")
        self.node = config.node or str(state.get("node") or hostname())
        self.ledger = NodeLedger(config.ledger.interval_s, self._gap_note(state))
        self.unwritten: list[dict[str, Any]] = []
        self.next_write = time.monotonic() + config.ledger.record_interval_s
        self._tries = 0

    def learn(self, cluster: str, node: str) -> None:
        """A job's names for this node (SLURM_CLUSTER_NAME, SLURMD_NODENAME), where none is configured."""
        self.cluster = self.config.cluster or cluster
        self.node = self.config.node or node

    def step(self) -> bool:
        """Write a record when one is due; True if one was written (a delivery is due)."""
        self.unwritten += [interval.document() for interval in self.ledger.closed()]
        if not self.unwritten or time.monotonic() < self.next_write:
            return False
        return self._write()

    def close(self) -> bool:
        """The agent stops: close the open interval and try once to write all that is left."""
        self.ledger.close()
        self.unwritten += [interval.document() for interval in self.ledger.closed()]
        return bool(self.unwritten) and self._write()

    def _write(self) -> bool:
        config = self.config
        document = node_record.build(self.cluster, self.node, self.boot_id, self.ncpus, self.unwritten)
        try:
            path = outbox.write_node(
                config.paths.outbox, document, node_record.filename(document), config.sampler.journal_fsync
            )
            self._save_state(self.unwritten[-1]["t1_s"])
        except OSError as exc:
            self._tries += 1
            self.next_write = time.monotonic() + min(RETRY_FIRST_S * 2 ** (self._tries - 1), RETRY_MAX_S)
            if self._tries == 1 or self._tries % 10 == 0:
                self.log("error", f"node record not written yet, kept and retried (try {self._tries}): {exc}")
            return False
        self.log("info", f"node record of {len(self.unwritten)} ledger intervals written to {path}")
        self.unwritten, self._tries = [], 0
        self.next_write = time.monotonic() + config.ledger.record_interval_s
        return True

    def _save_state(self, t1_s: float) -> None:
        state = {"t1_s": t1_s, "boot_id": self.boot_id, "cluster": self.cluster, "node": self.node}
        atomic_write(self.state_path, json.dumps(state).encode(), fsync=self.config.sampler.journal_fsync)

    def _state(self) -> dict[str, Any]:
        """The last agent's `ledger.json`; empty on the node's first agent or when it cannot be read."""
        try:
            state = json.loads(read_nofollow(self.state_path))
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _gap_note(self, state: dict[str, Any]) -> str | None:
        """What the first interval says about the time before it, from the last agent's state."""
        try:
            since = float(state["t1_s"])
        except (KeyError, TypeError, ValueError):
            return None  # nothing to compare with
        rebooted = state.get("boot_id") not in (None, self.boot_id) and self.boot_id is not None
        why = "the node rebooted" if rebooted else "no agent ran"
        return f"the ledger has no figures from {iso_z(since, 'seconds')} to this interval's start: {why}"
