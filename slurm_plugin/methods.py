"""How a component's energy was obtained: the method flags every record carries (docs/record.md).

A module of its own, below both the node (which measures) and the record (which reports): the
sampler's counters and the record's summaries import it, and it imports nothing.
"""

from enum import StrEnum


class Method(StrEnum):
    """How a component's energy was obtained, from most to least direct."""

    MEASURED = "measured"  # difference of a hardware energy counter
    INTEGRATED = "integrated"  # power readings integrated over time
    APPORTIONED = "apportioned"  # a share of a measured node-level counter
    ESTIMATED = "estimated"  # a model (TDP x utilisation, W per GB, MIG slice share)


# Least direct last: a component's overall method is the least direct one among its intervals.
ORDER = tuple(Method)
