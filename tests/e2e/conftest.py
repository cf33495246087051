"""Fixtures for end-to-end tests on a real single-node Slurm (testbed/slurm.py, testbed/host.py).

One cluster serves the whole session. Its Prolog and Epilog are small wrappers that run
jobcarbon's hooks (when the repo has them) and then record the environment slurmd gave them, so
tests can check both what jobcarbon recorded and what Slurm passed in.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed.hardware import SimulatedHardware
from testbed.host import REPO_ROOT, ensure_user, install_hooks, missing_binaries
from testbed.slurm import Cluster

REQUIRE_ENV = "JOBCARBON_REQUIRE_SLURM"
HOOK_WRAPPER = """#!/bin/sh
# Test-bed {context}: run the real hook, then record the environment slurmd gave it.
status=0
{run_hook}
echo "$SLURM_SCRIPT_CONTEXT $SLURM_JOB_ID ${{SLURM_JOB_RESTART_COUNT:--}}" >> "{record_dir}/hooks.log"
env -0 > "{record_dir}/$SLURM_SCRIPT_CONTEXT-$SLURM_JOB_ID.env.tmp"
mv "{record_dir}/$SLURM_SCRIPT_CONTEXT-$SLURM_JOB_ID.env.tmp" \\
   "{record_dir}/$SLURM_SCRIPT_CONTEXT-$SLURM_JOB_ID.env"
exit $status
"""


def slurm_unavailable_reason() -> str | None:
    """Why this machine cannot run the Slurm test bed, or None if it can."""
    if os.geteuid() != 0:
        return "the Slurm test bed needs root (slurmd, cgroups, useradd)"
    missing = missing_binaries()
    if missing:
        return (
            f"Slurm/munge not installed ({', '.join(missing)}); "
            "run `python3 -m testbed up --install-packages` or .ci/run"
        )
    return None


def require_slurm() -> None:
    """Skip the test, or fail it when JOBCARBON_REQUIRE_SLURM=1, if the test bed cannot run."""
    reason = slurm_unavailable_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def write_hook_wrapper(path: Path, context: str, hook: Path | None, record_dir: Path) -> Path:
    """Write an executable wrapper that runs `hook` (if any) and records its environment."""
    run_hook = f'"{hook}" || status=$?' if hook else ":"
    text = HOOK_WRAPPER.format(context=context, run_hook=run_hook, record_dir=record_dir)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def testbed_scratch() -> Path:
    """The test bed's scratch directory (shared with `python3 -m testbed`); checks Slurm first."""
    require_slurm()
    return Cluster().scratch


@pytest.fixture(scope="session")
def simulated_hardware(testbed_scratch: Path) -> Iterator[SimulatedHardware]:
    """RAPL following real CPU load and four fake GPUs, with jobcarbon configured to read them and
    to deliver records into a fresh database."""
    hardware = SimulatedHardware(testbed_scratch)
    hardware.start()
    hardware.write_jobcarbon_config(Cluster(scratch=testbed_scratch).jobcarbon_config)
    hardware.clear_job_files()
    hardware.create_database()
    try:
        yield hardware
    finally:
        hardware.stop()


@pytest.fixture(scope="session")
def jobcarbon_hooks(
    testbed_scratch: Path, simulated_hardware: SimulatedHardware
) -> tuple[Path | None, Path | None]:
    """jobcarbon's prolog and epilog installed for the test bed."""
    config = Cluster(scratch=testbed_scratch).jobcarbon_config
    return install_hooks(testbed_scratch, sys.executable, config, pythonpath=str(REPO_ROOT))


@pytest.fixture(scope="session")
def hook_record_dir(testbed_scratch: Path) -> Path:
    """Where the hook wrappers write `<prolog_slurmd|epilog_slurmd>-<job id>.env`."""
    record_dir = testbed_scratch / "hook-env"
    shutil.rmtree(record_dir, ignore_errors=True)  # job ids restart at 1 on every bring-up
    record_dir.mkdir(parents=True)
    return record_dir


@pytest.fixture(scope="session")
def slurm_cluster(
    testbed_scratch: Path,
    jobcarbon_hooks: tuple[Path | None, Path | None],
    hook_record_dir: Path,
) -> Iterator[Cluster]:
    """A running single-node cluster for the session; torn down at the end."""
    wrappers = testbed_scratch / "hooks"
    wrappers.mkdir(parents=True, exist_ok=True)
    prolog = write_hook_wrapper(wrappers / "testbed-prolog", "prolog", jobcarbon_hooks[0], hook_record_dir)
    epilog = write_hook_wrapper(wrappers / "testbed-epilog", "epilog", jobcarbon_hooks[1], hook_record_dir)
    cluster = Cluster(scratch=testbed_scratch, prolog=prolog, epilog=epilog)
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def slurm_user(slurm_cluster: Cluster) -> str:
    """An unprivileged local user that submits jobs."""
    ensure_user("jcalice")
    return "jcalice"


@pytest.fixture
def hook_runs(hook_record_dir: Path) -> Callable[[int], list[tuple[str, str]]]:
    """The hooks run for a job so far, in order: `[("prolog_slurmd", "0"), ("epilog_slurmd", "1")]`,
    each with the SLURM_JOB_RESTART_COUNT it saw."""

    def read(job_id: int) -> list[tuple[str, str]]:
        path = hook_record_dir / "hooks.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(c, n) for c, j, n in (line.split() for line in lines) if j == str(job_id)]

    return read


@pytest.fixture
def hook_env(hook_record_dir: Path) -> Callable[[int, str], dict[str, str]]:
    """Read the environment a hook saw: `hook_env(job_id, "prolog_slurmd")`."""

    def read(job_id: int, context: str) -> dict[str, str]:
        path = hook_record_dir / f"{context}-{job_id}.env"
        if not path.exists():
            raise AssertionError(f"no {context} record for job {job_id} ({path})")
        entries = path.read_text().split("\0")
        return dict(entry.split("=", 1) for entry in entries if "=" in entry)

    return read
