"""The agent's metrics textfile: what one rewrite costs for 64 jobs, written directly (what the agent
does; on the scratch directory's filesystem and on tmpfs) or through `prometheus-client` (a custom
collector and `write_to_textfile`, the library's way of exporting totals kept elsewhere), what each
costs to import, and a real agent's peak RSS with 64 jobs and the textfile rewritten on every tick.

    python3 -m bench.metrics [--quick]      (prints JSON; needs `pip install prometheus-client`)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench import hooks, procstats
from bench.node import build_node, simulator
from bench.stats import summary_ms
from slurm_plugin.node.jobenv import JobInfo
from slurm_plugin.node.metrics import Exposition, Health
from slurm_plugin.node.tracker import COMPONENTS, JobTracker

JOBS = 64
FIRST_JOB = 6000


def _sampler() -> SimpleNamespace:
    """What `Exposition.update` reads of a `NodeSampler`: 64 jobs, half of them with a GPU."""
    jobs = {}
    for index in range(JOBS):
        info = JobInfo(
            "c", FIRST_JOB + index, 0, "n1", f"user{index % 16}", 1000 + index, 1000, "physics", "batch"
        )
        tracker = JobTracker(info, 0.0, None, 0.0)  # type: ignore[arg-type]
        tracker.energy_j = dict.fromkeys(COMPONENTS, 1234.5678 * (index + 1))
        if index % 2:
            tracker.gpu_j = {f"GPU-{index:08x}-0000-4000-8000-000000000000": 999.25 * index}
        jobs[info.key] = tracker
    return SimpleNamespace(jobs=jobs, energy_j=dict.fromkeys(COMPONENTS, 1e6), sensors_ok={"rapl": True})


def _time(call: Any, runs: int) -> dict[str, float]:
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return summary_ms(durations)


def direct(directory: Path, runs: int) -> dict[str, float]:
    sampler, health, textfile = _sampler(), Health(), Exposition(directory, 0.0, 60.0)
    outbox = directory / "outbox"
    return _time(lambda: textfile.update(sampler, health, outbox, time.time()), runs)  # type: ignore[arg-type]


def _on_tmpfs(runs: int) -> dict[str, float] | None:
    """The same in /dev/shm: ext4 starts writing back a file renamed over another (auto_da_alloc),
    which is most of a rewrite's cost on disk."""
    if not Path("/dev/shm").is_dir():
        return None
    with tempfile.TemporaryDirectory(prefix="jobcarbon-bench-metrics-", dir="/dev/shm") as scratch:
        return direct(Path(scratch), runs)


def with_prometheus_client(directory: Path, runs: int) -> dict[str, float]:
    from prometheus_client import CollectorRegistry, write_to_textfile
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    sampler, health = _sampler(), Health()
    outbox = directory / "outbox"

    class Collector:
        def collect(self) -> Any:
            node = CounterMetricFamily("jobcarbon_node_energy_joules", "Node energy.", labels=["component"])
            for component in COMPONENTS:
                node.add_metric([component], sampler.energy_j[component])
            yield node
            labels = ["jobid", "user", "account", "partition"]
            job = CounterMetricFamily(
                "jobcarbon_job_energy_joules", "Job energy.", labels=[*labels, "component"]
            )
            gpu = CounterMetricFamily("jobcarbon_job_gpu_energy_joules", "Per GPU.", labels=[*labels, "gpu"])
            cpu = CounterMetricFamily("jobcarbon_job_cpu_seconds", "CPU time.", labels=labels)
            cpus = GaugeMetricFamily("jobcarbon_job_allocated_cpus", "CPUs.", labels=labels)
            for tracker in sampler.jobs.values():
                info = tracker.info
                values = [str(info.job_id), info.user, info.account or "", info.partition or ""]
                for component in COMPONENTS:
                    job.add_metric([*values, component], tracker.energy_j[component])
                for uuid, joules in tracker.gpu_j.items():
                    gpu.add_metric([*values, uuid], joules)
                cpu.add_metric(values, tracker.cpu_s)
                cpus.add_metric(values, 0)
            yield from (job, gpu, cpu, cpus)
            for name in ("start_time_seconds", "last_tick_timestamp_seconds", "jobs", "outbox_records"):
                yield GaugeMetricFamily(f"jobcarbon_agent_{name}", "Health.", value=health.ticks)
            yield CounterMetricFamily("jobcarbon_agent_ticks", "Ticks.", value=health.ticks)
            len(list(outbox.glob("*.json")))

    registry = CollectorRegistry()
    registry.register(Collector())  # type: ignore[arg-type]
    path = str(directory / "client.prom")
    return _time(lambda: write_to_textfile(path, registry), runs)


def import_cost(module: str) -> dict[str, float]:
    """Import time and RSS growth of `module` in a fresh interpreter that already holds what the agent
    imported before it had metrics (what the agent pays on top)."""
    code = (
        "import time\n"
        "import slurm_plugin.node.sampler, slurm_plugin.node.spool, slurm_plugin.outbox\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20\n"
        "before = rss()\n"
        "started = time.perf_counter()\n"
        f"import {module}\n"
        "took = time.perf_counter() - started\n"
        "print(took * 1000, rss() - before)\n"
    )
    runs = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        runs.append([float(v) for v in out.split()])
    runs.sort()
    return {"import_ms_p50": round(runs[2][0], 2), "rss_growth_mb": round(runs[2][1], 2)}


def agent_with_textfile(scratch: Path, duration_s: float) -> dict[str, Any]:
    """A real agent sampling 64 jobs at 1 s with the textfile rewritten on every tick."""
    node = build_node(scratch / "agent", 1.0)
    textfiles = scratch / "textfile"
    textfiles.mkdir()
    with node.config.open("a") as config:
        config.write(f"metrics:\n  textfile_dir: {json.dumps(str(textfiles))}\n  textfile_interval_s: 0\n")
        config.write("  ended_job_keep_s: 0\n")
    job_ids = [FIRST_JOB + index for index in range(JOBS)]
    try:
        hooks.start_jobs(node, job_ids, timeout_s=30)
        pid = hooks.agent_pid(node)
        rapl = simulator(node)
        run0, wall0 = procstats.runtime_s(pid), time.monotonic()
        while time.monotonic() - wall0 < duration_s:
            time.sleep(1.0)
            rapl.step(busy=0.5, dt_s=1.0)
        run_s, wall = procstats.runtime_s(pid) - run0, time.monotonic() - wall0
        text = (textfiles / "jobcarbon.prom").read_text()
        result = {
            "jobs": JOBS,
            "agent_peak_rss_mb": round(procstats.status_kb(pid, "VmHWM") / 1024, 1),
            "agent_cpu_ms_per_tick": round(run_s * 1000 / wall, 2),
            "textfile_lines": text.count("\n"),
            "textfile_bytes": len(text),
        }
        for job_id in job_ids:
            hooks.run_hook("epilog", node, job_id)
        result["textfile_removed_on_exit"] = (
            hooks.wait_exit(pid, 10.0) and not (textfiles / "jobcarbon.prom").exists()
        )
    finally:
        hooks.stop_agents(node)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, a 10 s agent window")
    args = parser.parse_args(argv)
    runs = 300 if args.quick else 2000
    with tempfile.TemporaryDirectory(prefix="jobcarbon-bench-metrics-") as scratch:
        root = Path(scratch)
        result = {
            "rewrite_64_jobs_direct_ms": direct(root, runs),
            "rewrite_64_jobs_direct_tmpfs_ms": _on_tmpfs(runs),
            "rewrite_64_jobs_prometheus_client_ms": with_prometheus_client(root, runs),
            "import_direct": import_cost("slurm_plugin.node.metrics"),
            "import_prometheus_client": import_cost("prometheus_client"),
            "agent": agent_with_textfile(root, 10.0 if args.quick else 30.0),
        }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
