"""Host commands the VM bed runs (mmdebstrap, mkfs, ip, QEMU): bounded in time, failures as one error."""

from __future__ import annotations

import shlex
import subprocess

from testbed.host import ClusterError


def check(command: list[str], timeout: float = 120) -> str:
    """Run a command; its failure becomes a ClusterError with the end of its output."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{command[0]}: timed out after {timeout:g} s") from None
    if done.returncode != 0:
        raise ClusterError(f"{shlex.join(command[:6])}: {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def quiet(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command whose failure the caller looks at itself."""
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
