"""Moved to `slurm_plugin.node.fastpath`: kept one release for the previous release's hook scripts."""

import sys

from slurm_plugin.node import fastpath

sys.modules[__name__] = fastpath
