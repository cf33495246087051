"""The Slurm test bed itself: hook installation, and a GPU job through a real cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.host import REPO_ROOT, ClusterError, install_hooks, rewrite_hook_defaults
from testbed.slurm import Cluster, JobResult

HOOK = """#!/bin/sh
: "${JOBCARBON_PYTHON:=/opt/jobcarbon/bin/python3}"
  : "${JOBCARBON_CONFIG:=/etc/jobcarbon/config.yaml}"
exec "$JOBCARBON_PYTHON" -m slurm_plugin.node.hooks prolog
"""


def test_rewrite_hook_defaults_replaces_only_the_default_lines() -> None:
    defaults = {"JOBCARBON_PYTHON": "/venv/bin/python3", "JOBCARBON_CONFIG": "/tb/jc.yaml"}
    assert rewrite_hook_defaults(HOOK, defaults) == HOOK.replace(
        "/opt/jobcarbon/bin/python3", "/venv/bin/python3"
    ).replace("/etc/jobcarbon/config.yaml", "/tb/jc.yaml")


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ({"JOBCARBON_PYTHONPATH": "/repo"}, "found 0"),
        ({"JOBCARBON_CONFIG": '/tmp/a"b'}, "cannot go inside a shell string"),
        ({"JOBCARBON_CONFIG": "/tmp/$HOME"}, "cannot go inside a shell string"),
    ],
)
def test_rewrite_hook_defaults_refuses_what_it_cannot_do(defaults: dict[str, str], message: str) -> None:
    with pytest.raises(ClusterError, match=message):
        rewrite_hook_defaults(HOOK, defaults)


@pytest.mark.skipif(
    not (REPO_ROOT / "prolog/jobcarbon-prolog").exists(), reason="jobcarbon's hooks not written yet"
)
def test_install_hooks_bakes_test_bed_defaults_into_the_repo_hooks(tmp_path: Path) -> None:
    config = tmp_path / "jobcarbon.yaml"
    prolog, epilog = install_hooks(tmp_path, "/venv/bin/python3", config)
    for hook in (prolog, epilog):
        text = hook.read_text()
        assert hook.stat().st_mode & 0o111
        assert ': "${JOBCARBON_PYTHON:=/venv/bin/python3}"' in text.splitlines()
        assert f': "${{JOBCARBON_CONFIG:={config}}}"' in text.splitlines()


@pytest.mark.slurm
def test_gpu_job_completes_after_prolog_saw_its_gpu(
    slurm_cluster: Cluster,
    slurm_user: str,
    hook_env: Callable[[int, str], dict[str, str]],
) -> None:
    job_id = slurm_cluster.submit(
        "#!/bin/sh\necho hello from $SLURM_JOB_ID\n",
        user=slurm_user,
        account="physics",
        gres="gpu:1",
    )
    result = slurm_cluster.wait_finished(job_id, timeout_s=60)

    assert result == JobResult(job_id=job_id, state="COMPLETED", exit_code=0, signal=0)
    output = slurm_cluster.workdir(slurm_user) / f"slurm-{job_id}.out"
    assert output.read_text() == f"hello from {job_id}\n"
    prolog = hook_env(job_id, "prolog_slurmd")
    assert prolog["SLURM_JOB_GPUS"] in {"0", "1", "2", "3"}
    assert prolog["SLURM_JOB_USER"] == slurm_user
    assert prolog["SLURM_JOB_ACCOUNT"] == "physics"
    # The epilog wrapper records its environment last, so this shows wait_finished waited for it.
    assert hook_env(job_id, "epilog_slurmd")["SLURM_JOB_ID"] == str(job_id)
