"""Where jobcarbon looks by default, and the environment variables that say otherwise.

Imports nothing: the hooks' fast path (node/fastpath.py) reads these before anything else loads.
"""

CONFIG_ENV = "JOBCARBON_CONFIG"
DEFAULT_CONFIG = "/etc/jobcarbon/config.yaml"
RUNDIR_ENV = "JOBCARBON_RUNDIR"
DEFAULT_RUNDIR = "/run/jobcarbon"
