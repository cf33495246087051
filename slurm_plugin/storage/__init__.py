"""The accounting database, on SQLite or PostgreSQL; all of jobcarbon's SQL lives in this package.

`Store` is imported on first use: the read-only query path imports `dialect` and `postgres_backend`
from here without the store's dependencies.
"""

from typing import Any

from slurm_plugin.storage.errors import RecordRejected, StoreError, StoreUnavailable

__all__ = ["RecordRejected", "Store", "StoreError", "StoreUnavailable"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from slurm_plugin.storage.store import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
