"""Where the configuration file is, and its error type: light enough for the prolog to import.

The prolog must not import PyYAML or the schema (see node/hook_settings.py), yet it needs to know which
file to look at and to catch the configuration's one-line errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from slurm_plugin.defaults import CONFIG_ENV as ENV_VAR
from slurm_plugin.defaults import DEFAULT_CONFIG
from slurm_plugin.errors import JobcarbonError

DEFAULT_PATH = Path(DEFAULT_CONFIG)


class ConfigError(JobcarbonError):
    """The configuration file is missing, unreadable or invalid; the message names file:line: key."""

    exit_code = 2  # like a bad command line: nothing was attempted


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The file to load: an explicit path, else $JOBCARBON_CONFIG, else the system default."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)
