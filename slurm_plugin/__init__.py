"""jobcarbon: measured per-job energy and carbon accounting for Slurm."""

__version__ = "0.1.0"
