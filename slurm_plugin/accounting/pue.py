"""Which PUE applies to a job part at a given time: the site default, refined per partition and period.

Rules are matched on the part's partition and on UTC dates; the most specific matching rule wins
(partition and period, then partition, then period), and among equals the later one in the config.
"""

from __future__ import annotations

from collections.abc import Sequence

from slurm_plugin.config import PueRule
from slurm_plugin.times import epoch_s


def _specificity(rule: PueRule) -> int:
    return (2 if rule.partition is not None else 0) + (1 if rule.start or rule.end else 0)


def pue_at(rules: Sequence[PueRule], default: float, partition: str | None, when_s: float) -> float:
    """The PUE in force for `partition` at UTC epoch `when_s`."""
    best, best_rank = default, -1
    for rule in rules:
        if rule.partition is not None and rule.partition != partition:
            continue
        if rule.start is not None and when_s < epoch_s(rule.start):
            continue
        if rule.end is not None and when_s >= epoch_s(rule.end):
            continue
        rank = _specificity(rule)
        if rank >= best_rank:
            best, best_rank = rule.pue, rank
    return best


def change_points(rules: Sequence[PueRule], start_s: float, end_s: float) -> list[float]:
    """Times inside (start_s, end_s) where a period rule begins or ends: the PUE may change there."""
    points = set()
    for rule in rules:
        for day in (rule.start, rule.end):
            if day is not None and start_s < epoch_s(day) < end_s:
                points.add(epoch_s(day))
    return sorted(points)
