"""The accounting database (SQLite now, PostgreSQL later); all of jobcarbon's SQL lives in this package."""

from slurm_plugin.storage.store import RecordRejected, Store, StoreError, StoreUnavailable

__all__ = ["RecordRejected", "Store", "StoreError", "StoreUnavailable"]
