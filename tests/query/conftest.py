"""Jobs stored once per module and backend, for the listing and summary tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slurm_plugin.storage import readonly
from tests import jobdb
from tests.jobdb import DAY, HOUR, Job

JOBS = [
    Job(201, user="alice", uid=1000, account="physics", partition="batch", start=DAY + 1 * HOUR, rows=10),
    Job(202, user="alice", uid=1000, account="chemistry", partition="gpu", start=DAY + 5 * HOUR, rows=10),
    Job(203, user="bob", uid=1001, account="chemistry", partition="batch", start=DAY + 9 * HOUR, rows=10),
    Job(204, user="bob", uid=1001, account="biology", partition="batch", start=DAY + 30 * HOUR, rows=10),
    Job(205, node="node001", user="carol", uid=1002, account="physics", start=DAY + 12 * HOUR, rows=10),
    Job(205, node="node002", user="carol", uid=1002, account="physics", start=DAY + 12 * HOUR, rows=10),
]


@pytest.fixture(scope="module")
def jobs_url(module_db_url: str) -> str:
    return jobdb.fill(module_db_url, JOBS)


@pytest.fixture
def jobs_reader(jobs_url: str) -> Iterator[readonly.Reader]:
    opened = readonly.Reader.open(jobs_url)
    yield opened
    opened.close()
