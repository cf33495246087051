"""Context for the prolog's time: what the interpreter and the hook's imports cost on their own."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.stats import summary_ms
from testbed import venv

# The prolog's own command line, stopping after the imports (prolog/jobcarbon-prolog).
HOOK_IMPORT = "import slurm_plugin.{}"
COMMANDS = {
    "python_S_pass": ["-S", "-c", "pass"],
    "python_pass": ["-c", "pass"],
    "hook_imports": ["-P", "-s", "-c", HOOK_IMPORT.format("hooks")],  # the full path
    "fastpath_imports": ["-P", "-s", "-c", HOOK_IMPORT.format("fastpath")],
}


def measure(runs: int, scratch: Path) -> dict[str, Any]:
    """Start-up time of bare `python3 -S`, of `python3` with site (.pth files), and of the hook's imports
    on its fast and its full path, with the python of a venv like the documented install's."""
    python = venv.make(scratch / "startup-venv")
    env = {"PATH": os.defpath}
    return {name: summary_ms(_times([str(python), *args], env, runs)) for name, args in COMMANDS.items()}


def _times(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(argv, env=env, check=True)  # warm the page cache and .pyc files
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True)
        times.append(time.perf_counter() - started)
    return times
