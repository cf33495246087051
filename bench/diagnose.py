"""Where the time and memory go: `python3 -m bench.diagnose {imports,tick,memory}`.

`imports` runs the hooks' and the agent's imports under `-X importtime`; `tick` profiles
`NodeSampler.tick` in-process with cProfile; `memory` reports the agent's RSS after each start-up stage
and tracemalloc's largest allocation sites. Diagnostics for docs/benchmarks.md, not targets.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.hooks import REPO_ROOT, hook_env
from bench.node import Node, add_job_cgroup, build_node, simulator

HOOK_IMPORTS = "import slurm_plugin.node.hooks"
AGENT_IMPORTS = HOOK_IMPORTS.replace(
    "slurm_plugin.node.hooks", "slurm_plugin.node.agent, slurm_plugin.sensors.nvml, pynvml"
)


def import_times(code: str, top: int) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the `top` costliest imports, from `python -X importtime`."""
    argv = [sys.executable, "-X", "importtime", "-P", "-s", "-c", code]
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": os.defpath}
    stderr = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stderr
    rows = []
    for line in stderr.splitlines()[1:]:
        _, _self_us, cumulative_us, name = line.replace(":", "|", 1).split("|")
        rows.append((int(cumulative_us), name.rstrip()))
    return sorted(rows, reverse=True)[:top]


def print_imports(top: int) -> None:
    for label, code in (("prolog/epilog", HOOK_IMPORTS), ("agent", AGENT_IMPORTS)):
        print(f"-- {label}: costliest imports (cumulative ms, nesting shown by indent)")
        for cumulative_us, name in import_times(code, top):
            print(f"{cumulative_us / 1000:8.1f}  {name}")


def sampler_with_jobs(node: Node, jobs: int, gpus: int) -> Any:
    """A NodeSampler on the simulated node with `jobs` jobs (the first one holding `gpus` GPUs)."""
    from slurm_plugin import config
    from slurm_plugin.node import jobenv
    from slurm_plugin.node.sampler import NodeSampler

    sampler = NodeSampler(config.load(node.config), lambda level, message: None)
    for index in range(jobs):
        job_id = 100 + index
        add_job_cgroup(node, job_id)
        env = hook_env(node, job_id, "prolog", gpus if index == 0 else 0)
        info = jobenv.from_env(env, "bench", "")
        journal = node.root / f"journal-{job_id}.jsonl"
        sampler.add(info, time.time(), journal, None)
    return sampler


def profile_tick(jobs: int, gpus: int, ticks: int, top: int, fsync: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="jobcarbon-profile-") as scratch:
        node = build_node(Path(scratch), 1.0, gpus=gpus, fsync=fsync)
        sampler, rapl = sampler_with_jobs(node, jobs, gpus), simulator(node)
        wall_s, cpu_s = _timed_ticks(sampler, rapl, ticks, None)
        profiler = cProfile.Profile()
        _timed_ticks(sampler, rapl, ticks, profiler)
        for job in list(sampler.jobs):
            sampler.remove(job)
    print(
        f"-- NodeSampler.tick, {jobs} job(s), {gpus} GPU(s), journal_fsync={fsync}: "
        f"{wall_s * 1000 / ticks:.3f} ms wall, {cpu_s * 1000 / ticks:.3f} ms CPU per tick"
    )
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    print(text.getvalue())


def _timed_ticks(
    sampler: Any, rapl: Any, ticks: int, profiler: cProfile.Profile | None
) -> tuple[float, float]:
    """Tick `ticks` times, moving the RAPL counters in between; return the ticks' wall and CPU time."""
    wall = cpu = 0.0
    for _ in range(ticks):
        rapl.step(busy=0.5, dt_s=1.0)
        time.sleep(0.001)  # successive ticks need distinct timestamps
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.runcall(sampler.tick)
        else:
            sampler.tick()
        wall, cpu = wall + time.perf_counter() - wall0, cpu + time.process_time() - cpu0
    return wall, cpu


# Runs in a fresh `python -P -S` so only the agent's own imports count; argv: config path, "trace"?
MEMORY_CHILD = """
import site, sys, tracemalloc
sys.path.extend(site.getsitepackages())
trace = sys.argv[2] == "trace"
if trace:
    tracemalloc.start()
def rss(label):
    with open("/proc/self/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    print(f"{kb / 1024:6.1f} MB RSS  {label}")
rss("interpreter (-S)")
import slurm_plugin.node.agent
rss("+ import slurm_plugin.node.agent (yaml, json, selectors, dataclasses, ...)")
from slurm_plugin import config
from slurm_plugin.node.sampler import NodeSampler
settings = config.load(sys.argv[1])
sampler = NodeSampler(settings, lambda level, message: None)
sampler.tick()
rss("+ config.load + NodeSampler + one tick")
import pynvml
rss("+ import pynvml")
from slurm_plugin.sensors.nvml import NvmlSensor
sensor = NvmlSensor.open(settings.nvml)
rss("+ NvmlSensor.open (loads libnvidia-ml)")
if trace:
    for stat in tracemalloc.take_snapshot().statistics("filename")[:int(sys.argv[3])]:
        print(f"{stat.size / 1024:8.0f} KiB  {stat.traceback[0].filename}")
"""


def memory_stages(gpus: int, top: int) -> None:
    """The agent's RSS after each start-up stage, then tracemalloc's largest allocation sites."""
    with tempfile.TemporaryDirectory(prefix="jobcarbon-profile-") as scratch:
        node = build_node(Path(scratch), 1.0, gpus=max(gpus, 1))
        env = {"PYTHONPATH": str(REPO_ROOT), "PATH": os.defpath}
        for mode in ("rss", "trace"):
            argv = [sys.executable, "-P", "-S", "-c", MEMORY_CHILD, str(node.config), mode, str(top)]
            if mode == "trace":
                print(f"-- with tracemalloc: top {top} files by live Python allocations")
            print(subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.diagnose", description=__doc__)
    parser.add_argument("what", choices=["imports", "tick", "memory"])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", help="journal_fsync: false")
    args = parser.parse_args(argv)
    if args.what == "imports":
        print_imports(args.top)
    elif args.what == "tick":
        profile_tick(args.jobs, args.gpus, args.ticks, args.top, args.fsync)
    else:
        memory_stages(args.gpus, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
