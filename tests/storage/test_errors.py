"""The storage and read-path errors: all under the one root, each exiting 1 as the CLI always did."""

from __future__ import annotations

import pytest

from slurm_plugin.errors import JobcarbonError
from slurm_plugin.storage import dialect, readonly
from slurm_plugin.storage.errors import RecordRejected, StoreError, StoreUnavailable


@pytest.mark.parametrize(
    "error",
    [
        StoreError,
        StoreUnavailable,
        RecordRejected,
        dialect.UrlError,
        readonly.QueryError,
        readonly.DatabaseUnavailable,
    ],
)
def test_every_storage_error_is_a_jobcarbon_error_exiting_1(error: type[Exception]) -> None:
    assert issubclass(error, JobcarbonError)
    assert error.exit_code == 1
