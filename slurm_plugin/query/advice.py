"""Advice on a finished job, as Princeton's jobstats gives it but in energy terms: what the GPUs and cores
it left idle, the memory it did not use, its time limit or its failure cost (docs/querying.md, "Advice").

Pure: a job summary document (`job_summary.build`) and the site's thresholds (`config.Advice`) in, one
sentence per finding out. Figures are the summary's own, so a sentence never disagrees with the table.
"""

from __future__ import annotations

from typing import Any

from slurm_plugin.config import Advice
from slurm_plugin.query.job_summary_text import duration, joules

# Slurm states in which a job's energy bought no (complete) result
UNFINISHED = ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "CANCELLED")


def notes(summary: dict[str, Any], settings: Advice) -> list[str]:
    """The advice for a finished job, most costly first as far as a reader cares: how it ended, then
    what it held and did not use."""
    if summary["state"] != "completed":
        return []
    return [
        *_ending(summary),
        *_gpus(summary, settings),
        *_cores(summary, settings),
        *_memory(summary, settings),
    ]


def _cost(summary: dict[str, Any], joules_spent: float) -> str:
    """ "4.2 Wh, 1.4 g CO2e" (the CO2e only once the job has a footprint)."""
    carbon = summary.get("carbon") or {}
    if not carbon.get("it_energy_j"):
        return joules(joules_spent)
    return f"{joules(joules_spent)}, {joules_spent * carbon['co2e_g'] / carbon['it_energy_j']:.2g} g CO2e"


def _ending(summary: dict[str, Any]) -> list[str]:
    slurm = summary.get("slurm") or {}
    state, spent = slurm.get("state"), summary["energy"]["total_j"]
    if state == "TIMEOUT":
        limit = slurm.get("time_limit_s")
        at = f" of {duration(limit)}" if limit else ""
        return [
            f"ran into its time limit{at}: {_cost(summary, spent)} spent on a run that was cut short; "
            "checkpoint, or request the time it needs"
        ]
    if state in UNFINISHED:
        return [f"{state.lower().replace('_', ' ')}: {_cost(summary, spent)} spent without a complete result"]
    return []


def _gpus(summary: dict[str, Any], settings: Advice) -> list[str]:
    """The GPUs idle for more than `gpu_idle_fraction_above` of their sampled time, and what their idle
    ticks used. No minimum duration: a GPU held and never used is waste however short the job."""
    use = summary.get("efficiency") or {}
    idle = [
        gpu
        for gpu in use.get("gpus") or []
        if gpu["idle_fraction"] is not None and gpu["idle_fraction"] > settings.gpu_idle_fraction_above
    ]
    if not idle:
        return []
    share = sum(g["idle_fraction"] * g["sampled_s"] for g in idle) / sum(g["sampled_s"] for g in idle)
    count = f"{len(idle)} GPU{'s' if len(idle) > 1 else ''}"
    of = f" of {len(use['gpus'])}" if len(use["gpus"]) > len(idle) else ""
    wasted = _cost(summary, sum(g["idle_j"] for g in idle))
    return [f"{count}{of} idle {share * 100:.0f} % of the time: {wasted} wasted; request fewer GPUs"]


def _cores(summary: dict[str, Any], settings: Advice) -> list[str]:
    use = summary.get("efficiency") or {}
    efficiency = use.get("cpu_efficiency")
    if efficiency is None or efficiency >= settings.cpu_efficiency_below:
        return []
    if summary["elapsed_s"] < settings.min_elapsed_s:
        return []
    return [
        f"CPU efficiency {efficiency:.0%}: the idle cores used {_cost(summary, use['idle_cpu_j'])}; "
        "request fewer cores"
    ]


def _memory(summary: dict[str, Any], settings: Advice) -> list[str]:
    use = summary.get("efficiency") or {}
    used = use.get("mem_used_fraction")
    if used is None or used >= settings.memory_used_below or summary["elapsed_s"] < settings.min_elapsed_s:
        return []
    peak_gb, asked_gb = use["mem_peak_bytes"] / 2**30, use["mem_requested_bytes"] / 2**30
    return [
        f"memory peak {peak_gb:.2g} GiB of {asked_gb:.2g} GiB requested ({used:.0%}); request less, "
        "so the node's memory (and its DRAM power) serves other jobs"
    ]
