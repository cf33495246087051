"""Moved to `slurm_plugin.node.agent`: kept one release for agents spawned by the previous release's
hooks (`python -m slurm_plugin.agent`)."""

import sys

from slurm_plugin.node.agent import main

if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = sys.modules["slurm_plugin.node.agent"]
