"""Moved to `slurm_plugin.node.hooks`: kept one release for the previous release's hook scripts."""

import sys

from slurm_plugin.node import hooks

sys.modules[__name__] = hooks
