"""Moved to `slurm_plugin.node.journal`: kept one release for agents of the previous release, which
import it lazily when a job ends (an agent keeps running across a package upgrade)."""

import sys

from slurm_plugin.node import journal

sys.modules[__name__] = journal
