"""Shared fixtures: the environment slurmd gives a prolog, and the job it describes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from slurm_plugin.jobenv import JobInfo, from_env

# A 26.05-style prolog environment (names from src/plugins/prep/script/prep_script_slurmd.c).
SLURM_ENV = {
    "SLURM_CLUSTER_NAME": "hpc",
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_RESTART_COUNT": "0",
    "SLURMD_NODENAME": "node001",
    "SLURM_JOB_USER": "alice",
    "SLURM_JOB_UID": "1000",
    "SLURM_JOB_GID": "1000",
    "SLURM_JOB_ACCOUNT": "physics",
    "SLURM_JOB_PARTITION": "batch",
    "SLURM_JOB_SLUID": "s0KZ3M1Q7H2B4X",
    "SLURM_JOB_CPUS_PER_NODE": "4(x2)",
    "SLURM_JOB_GPUS": "0,1",
    "CUDA_VISIBLE_DEVICES": "0,1",
}


@pytest.fixture
def slurm_env() -> dict[str, str]:
    """A fresh copy of a valid prolog environment, for tests to spoil one variable at a time."""
    return dict(SLURM_ENV)


@pytest.fixture
def job_info(slurm_env: dict[str, str]) -> JobInfo:
    return from_env(slurm_env)


@pytest.fixture
def slurmd_umask() -> Iterator[None]:
    """A fixed umask (022, the usual daemon one), so file modes do not depend on the test runner."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)
