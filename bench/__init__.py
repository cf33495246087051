"""Benchmarks of jobcarbon's node footprint: hook latency, sampler cost, density (`python3 -m bench.run`)."""
