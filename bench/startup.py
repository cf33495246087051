"""Context for the prolog's time: what the interpreter and the hook's imports cost on their own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from bench.hooks import REPO_ROOT
from bench.stats import summary_ms

# The prolog's own command line, stopping after the imports (prolog/jobcarbon-prolog).
HOOK_IMPORT = "import site, sys; sys.path.extend(site.getsitepackages()); import slurm_plugin.{}"
COMMANDS = {
    "python_S_pass": ["-S", "-c", "pass"],
    "python_pass": ["-c", "pass"],
    "hook_imports": ["-P", "-S", "-c", HOOK_IMPORT.format("hooks")],  # the full path
    "fastpath_imports": ["-P", "-S", "-c", HOOK_IMPORT.format("fastpath")],
}


def measure(runs: int) -> dict[str, Any]:
    """Start-up time of bare `python3 -S`, of `python3` with site (.pth files), and of the hook's imports
    on its fast and its full path."""
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": os.defpath}
    return {name: summary_ms(_times([sys.executable, *args], env, runs)) for name, args in COMMANDS.items()}


def _times(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(argv, env=env, check=True)  # warm the page cache and .pyc files
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True)
        times.append(time.perf_counter() - started)
    return times
