"""The monthly reports' database: test_monthly's jobs on SQLite and on PostgreSQL in turn (`db_url`);
a module with data of its own defines its own `store` (the `reader` here opens it) or `reader`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slurm_plugin.storage import Store, readonly
from tests.reports.test_monthly import fill


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = fill(db_url)
    yield opened
    opened.close()


@pytest.fixture
def reader(store: Store, db_url: str) -> Iterator[readonly.Reader]:
    opened = readonly.Reader.open(db_url)
    yield opened
    opened.close()
