"""`python -m slurm_plugin` runs the `jobcarbon` command."""

import sys

from slurm_plugin.cli.main import main

sys.exit(main())
