"""Summaries of repeated timings."""

from __future__ import annotations

import statistics


def percentile(values: list[float], pct: int) -> float:
    """The pct-th percentile, interpolated between closest ranks (statistics' "inclusive" method)."""
    if not values:
        raise ValueError("no values")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    """p50, p95 and max of timings given in seconds, in milliseconds."""
    return {
        "n": len(values_s),
        "p50_ms": round(percentile(values_s, 50) * 1000, 2),
        "p95_ms": round(percentile(values_s, 95) * 1000, 2),
        "max_ms": round(max(values_s) * 1000, 2),
    }
