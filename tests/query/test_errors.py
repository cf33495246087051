"""The query path's errors: all under the one root, each exiting 1 as the CLI always did."""

from __future__ import annotations

import pytest

from slurm_plugin.errors import JobcarbonError
from slurm_plugin.query import client, slurm_ids


@pytest.mark.parametrize("error", [client.ServiceError, client.Refused, slurm_ids.JobIdError])
def test_every_query_error_is_a_jobcarbon_error_exiting_1(error: type[Exception]) -> None:
    assert issubclass(error, JobcarbonError)
    assert error.exit_code == 1


def test_a_refusal_keeps_its_kind_and_its_line() -> None:
    refused = client.Refused("not_found", "no job 7 in the jobcarbon database")
    assert (refused.kind, str(refused)) == ("not_found", "no job 7 in the jobcarbon database")
