"""The store's exceptions, the same for every backend, so callers never import a driver."""

from slurm_plugin.errors import JobcarbonError


class StoreError(JobcarbonError):
    """The database URL is unusable, or the database cannot be used by this version."""

    prefix = "database: "


class StoreUnavailable(StoreError):
    """The database cannot be reached now (down, locked, read-only, no permission): try again later."""


class RecordRejected(StoreError):
    """The database refused the data as inconsistent (a constraint failed)."""


class DeadlinePassed(StoreUnavailable):
    """A read ran past its request's deadline and was stopped (see `backend.connect`)."""

    def __init__(self) -> None:
        super().__init__("the query took too long and was stopped")
