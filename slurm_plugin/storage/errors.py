"""The store's exceptions, the same for every backend, so callers never import a driver."""

from slurm_plugin.errors import JobcarbonError


class StoreError(JobcarbonError):
    """The database URL is unusable, or the database cannot be used by this version."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (down, locked, read-only, no permission): try again later."""


class RecordRejected(StoreError):
    """The database refused the data as inconsistent (a constraint failed)."""
