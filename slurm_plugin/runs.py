"""A job run's identity (`node.jobenv.run_of` makes it): its pattern, checked wherever it is read.

Slurm reuses job ids, so (cluster, job id, restart count) does not name one job; the run does. Its text
is a path-safe kind and value, `sluid:<SLUID>`, `start:<epoch s>` or `seen:<epoch s>`; records of
releases before it have none, stored as the legacy run "" (docs/record.md).
"""

from __future__ import annotations

import re
from typing import TypeGuard

PATTERN = re.compile(r"(?:sluid:s[0-9A-Z]{13}|start:[0-9]{1,12}|seen:[0-9]{1,12})")
LEGACY = ""  # the run of a record that has none
SEEN = "seen:"  # a run only one node saw (the prolog's clock): joined to its job's others at ingest


def valid(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and PATTERN.fullmatch(value) is not None


def file_part(run: str) -> str:
    """The run in a file name: ':' is not portable there."""
    return run.replace(":", "-")
