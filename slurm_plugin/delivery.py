"""Moved to `slurm_plugin.accounting.delivery`: kept one release for the previous release's deliver
unit and agents (`python -m slurm_plugin.delivery`)."""

import sys

from slurm_plugin.accounting.delivery import main

if __name__ == "__main__":
    sys.exit(main())
sys.modules[__name__] = sys.modules["slurm_plugin.accounting.delivery"]
