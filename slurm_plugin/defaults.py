"""Where jobcarbon looks by default, and the environment variables that say otherwise.

Imports nothing: the hooks' fast path (node/fastpath.py) reads these before anything else loads.
"""

CONFIG_ENV = "JOBCARBON_CONFIG"
DEFAULT_CONFIG = "/etc/jobcarbon/config.yaml"
RUNDIR_ENV = "JOBCARBON_RUNDIR"
DEFAULT_RUNDIR = "/run/jobcarbon"
HOOK_LOG_ENV = "JOBCARBON_HOOK_LOG"
DEFAULT_HOOK_LOG = "/var/log/jobcarbon/hooks.log"  # also where a log line goes when no system log exists
