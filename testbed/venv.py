"""A jobcarbon venv shaped like the documented install (/opt/jobcarbon, docs/install.md), made in
a moment: no pip, and a .pth file that reaches this checkout and this interpreter's packages.

Hooks and benchmarks run from it so that they see what a node sees: the venv's own site-packages
and .pth files, not whatever the developer's interpreter loads at start-up.
"""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def make(directory: Path) -> Path:
    """Create the venv in `directory` and return its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    site_packages = next(directory.glob("lib/python3*/site-packages"))
    paths = [str(REPO_ROOT), *site.getsitepackages()]
    (site_packages / "jobcarbon.pth").write_text("\n".join(paths) + "\n", encoding="utf-8")
    return directory / "bin" / "python"
