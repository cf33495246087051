"""Simulated hardware for tests, the Slurm test bed and benchmarks: no real RAPL or GPU needed."""
