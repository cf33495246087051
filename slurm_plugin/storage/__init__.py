"""The accounting database, on SQLite or PostgreSQL; all of jobcarbon's SQL lives in this package.

`Store` is imported on first use: the read-only query path (`readonly`, `month_reads`) opens the
database through `backend.connect(..., read_only=True)` without the store's dependencies; `query/` and
`reports/` build their documents from the rows it returns.
"""

from typing import Any

from slurm_plugin.storage.errors import RecordRejected, StoreError, StoreUnavailable

__all__ = ["RecordRejected", "Store", "StoreError", "StoreUnavailable"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from slurm_plugin.storage.store import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
