"""The summary of one job, `jobcarbon <jobid>`: built from stored rows, rendered as text or JSON.

`job_summary` reads a finished job through `storage.readonly` and applies visibility; `build` is pure:
it takes those rows and returns the document whose schema is `job_summary_schema.json`
(`jobcarbon/job-summary/1`, documented in docs/querying.md). `job_summary_text` turns that document
into the text a user reads, so the query service can send the document and the CLI render it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Any

from slurm_plugin import figures, uncertainty
from slurm_plugin.accounting.footprint import J_PER_KWH, RUNGS
from slurm_plugin.methods import ORDER
from slurm_plugin.query import visibility, what_if
from slurm_plugin.storage import readonly
from slurm_plugin.storage.readonly import QueryError, Reader
from slurm_plugin.times import iso_z

SCHEMA = "jobcarbon/job-summary/1"
COLUMNS = 40  # sparkline width
# Passenger-car emissions per km: the EEA's 2024 average for new cars (provisional data), the value
# carbontracker 2.4.3 ships in carbontracker/emissions/conversion/co2eq.csv.
CAR_G_PER_KM = 106.8
CAR_SOURCE = "EEA 2024 new-car average, as in Carbontracker 2.4.3"
QUALITY = {
    "measured_series": "measured",
    "forecast_series": "forecast",
    "zone_yearly": "yearly average",
    "country_yearly": "yearly average",
    "constant": "configured constant",
    "world": "world average",
}
__all__ = ["RUNGS", "SCHEMA", "JobNotFound", "JobNotMeasured", "build", "job_summary", "mig_suffix"]


class JobNotFound(QueryError):
    """No such job, or not one the caller may see: the same answer, so a refusal reveals nothing."""

    def __init__(self, job_id: int, run: str | None = None):
        which = f" (run {run!r})" if run is not None else ""
        super().__init__(f"no job {job_id}{which} in the jobcarbon database")
        self.job_id = job_id


class JobNotMeasured(QueryError):
    """The job is stored but nothing was measured (no cgroup found, sampler never ran, ...)."""


def job_summary(
    reader: Reader, scope: visibility.Scope, job_id: int, cluster: str | None = None, run: str | None = None
) -> dict[str, Any]:
    """The summary document of a finished job the scope may see: its run `run`, else the latest; the
    other runs of the id it may see (requeues, and other jobs Slurm gave the same id) are listed."""
    runs = visibility.visible(readonly.job_runs(reader, job_id), scope, cluster)
    chosen = [found for found in runs if run is None or found["run"] == run]
    if not chosen:
        raise JobNotFound(job_id, run)
    job = chosen[-1]
    parts = readonly.job_parts(reader, job["id"])
    if not parts:
        raise JobNotFound(job_id)
    if all(p["total_j"] == 0 and p["coverage_fraction"] == 0 for p in parts):
        why = next(iter(n for p in parts for n in p["notes"] + p["partial_reasons"]), "no samples")
        raise JobNotMeasured(f"job {job_id} ran but jobcarbon measured nothing: {why}")
    others = [other_run(r) for r in runs if r["id"] != job["id"]]
    return build(job, parts, intensity_around(reader, job, parts), others)


def other_run(job: dict[str, Any]) -> dict[str, Any]:
    """Another run of the shown job's id, as `other_runs` lists it (`jobcarbon ID --run RUN` shows it)."""
    keys = ("cluster", "restart_count", "run")
    return {key: job[key] for key in keys} | {"start": iso_z(job["start_s"], "seconds")}


def intensity_around(
    reader: Reader, job: dict[str, Any], parts: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The stored series of the job's zone that the what-if reads (`what_if.fetch_range`; none without a
    zone)."""
    zone = next(
        (p["footprint"]["zone"] for p in parts if p["footprint"] and p["footprint"].get("zone")), None
    )
    if zone is None:
        return []
    return readonly.intensity_between(reader, zone, *what_if.fetch_range(job["start_s"], job["end_s"]))


SLURM_NUMBERS = (
    "time_limit_s", "req_cpus", "req_mem_mb", "array_job_id", "array_task_id", "het_job_id", "het_job_offset",
)  # fmt: skip


def build(
    job: dict[str, Any],
    parts: Sequence[dict[str, Any]],
    around: Sequence[dict[str, Any]] = (),
    other_runs: Sequence[dict[str, Any]] = (),
    state: str = "completed",
) -> dict[str, Any]:
    """The summary document of one job run: `job` (a jobs row), its parts (job_parts rows with
    `footprint`, `timeline`, `gpu_devices`), the intensity slots around it, and its other runs."""
    start_s, end_s = job["start_s"], job["end_s"]
    energy = _energy(parts)
    carbon = _carbon(parts)
    facts = _slurm(job)
    use = _efficiency(parts, carbon, facts)
    return (
        ({"slurm": facts} if facts else {})
        | ({"efficiency": use} if use else {})
        | {
            "schema": SCHEMA,
            "state": state,
            "cluster": job["cluster"],
            "job_id": job["job_id"],
            "restart_count": job["restart_count"],
            "run": job.get("run", ""),
            "other_runs": list(other_runs),
            "user": job["user_name"],
            "uid": job["uid"],
            "account": job["account"],
            "partition": job["partition"],
            "nodes": [p["node"] for p in parts],
            "start": iso_z(start_s, "seconds"),
            "end": iso_z(end_s, "seconds"),
            "elapsed_s": round(max(end_s - start_s, 0.0), 3),
            "energy": energy,
            "carbon": carbon,
            "coverage": _coverage(parts),
            "power": _power(parts, start_s, end_s),
            "equivalent": _equivalent(carbon),
            "day_range": (
                what_if.day_range(carbon["facility_energy_j"] / J_PER_KWH, around, start_s, end_s - start_s)
                if carbon
                else None
            ),
            "estimates": _estimates(energy, carbon),
        }
    )


def _slurm(job: dict[str, Any]) -> dict[str, Any] | None:
    """What Slurm said about the job (the jobs row's facts, docs/record.md), or None when it said nothing
    (a record of an earlier release, or Slurm not asked)."""
    facts = {
        "job_name": job.get("job_name"),
        "state": job.get("slurm_state"),
        "exit_code": job.get("exit_code"),
        "signal": job.get("exit_signal"),
        **{name: job.get(name) for name in SLURM_NUMBERS},
        "qos": job.get("qos"),
        "submit": iso_z(job["submit_s"], "seconds") if job.get("submit_s") is not None else None,
    }
    return facts if any(value is not None for value in facts.values()) else None


def _efficiency(
    parts: Sequence[dict[str, Any]], carbon: dict[str, Any] | None, slurm: dict[str, Any] | None
) -> dict[str, Any] | None:
    """CPU efficiency, memory peak against the request, and the idle cores' energy and CO2e, over the
    parts whose records measured them (docs/record.md, `efficiency`); None when none did."""
    known = [p["efficiency"] for p in parts if p.get("efficiency")]
    if not known:
        return None
    cpu_s, core_s = sum(e["cpu_time_s"] for e in known), sum(e["core_s"] for e in known)
    idle_j = sum(e["idle_cpu_j"] for e in known)
    peak = sum(e["mem_peak_bytes"] for e in known)
    requested_mb = (slurm or {}).get("req_mem_mb")
    requested = round(requested_mb * 2**20) if requested_mb else None
    g_per_j = carbon["co2e_g"] / carbon["it_energy_j"] if carbon and carbon.get("it_energy_j") else None
    idle_gpu_j = sum(e.get("idle_gpu_j", 0.0) for e in known)
    waste_j = idle_j + idle_gpu_j
    return {
        "cpu_time_s": round(cpu_s, 3),
        "core_s": round(core_s, 3),
        "cpu_efficiency": round(cpu_s / core_s, 4) if core_s else None,
        "mem_peak_bytes": peak,
        "mem_requested_bytes": requested,
        "mem_used_fraction": round(peak / requested, 4) if requested else None,
        "idle_cpu_j": round(idle_j, 3),
        "idle_cpu_co2e_g": figures.kept(idle_j * g_per_j) if g_per_j is not None else None,
        "gpus": _gpu_use(parts),
        "idle_gpu_j": round(idle_gpu_j, 3),
        "idle_gpu_co2e_g": figures.kept(idle_gpu_j * g_per_j) if g_per_j is not None else None,
        "waste_j": round(waste_j, 3),
        "waste_co2e_g": figures.kept(waste_j * g_per_j) if g_per_j is not None else None,
    }


def _gpu_use(parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each whole GPU's utilisation, memory peak and idle energy (docs/record.md, `efficiency.gpus`),
    by node and GPU, with the idle threshold its record was built with."""
    found = []
    for part in parts:
        use = part.get("efficiency") or {}
        for uuid, gpu in sorted((use.get("gpus") or {}).items()):
            found.append(
                {"id": uuid, "node": part["node"], "idle_below_pct": use["gpu_idle_util_pct"], **gpu}
            )
    return found


def _weakest(methods: Sequence[str | None]) -> str | None:
    known = [m for m in methods if m in ORDER]
    return max(known, key=ORDER.index) if known else None


def _component(parts: Sequence[dict[str, Any]], name: str) -> dict[str, Any] | None:
    measured = [p for p in parts if p[f"{name}_j"] is not None]
    if not measured:
        return None
    joules = sum(p[f"{name}_j"] for p in measured)
    return {"joules": round(joules, 3), "method": _weakest([p[f"{name}_method"] for p in measured])}


def _energy(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_method: dict[str, float] = {}
    for part in parts:
        for method, joules in _joules_by_method(part).items():
            by_method[method] = by_method.get(method, 0.0) + joules
    return {
        "cpu": _component(parts, "cpu"),
        "dram": _component(parts, "dram"),
        "gpus": _gpus(parts),
        "total_j": round(sum(p["total_j"] for p in parts), 3),
        "by_method_j": {m: round(by_method[m], 3) for m in ORDER if m in by_method},
    }


def _gpus(parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """GPU energy grouped by model (MIG slices apart from whole GPUs), with each device listed."""
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for part in parts:
        described = {g["uuid"]: g for g in part["gpus"]}
        devices = part["gpu_devices"]
        if not devices and part["gpu_j"] is not None:  # record unreadable: the part's total only
            devices = {"unknown": {"joules": part["gpu_j"], "method": part["gpu_method"]}}
        for uuid, used in sorted(devices.items()):
            gpu = described.get(uuid, {})
            key = (gpu.get("model") or "unknown model", gpu.get("parent_uuid") is not None)
            device = {"id": uuid, "node": part["node"], "joules": used["joules"], "method": used["method"]}
            if gpu.get("parent_uuid"):
                device.update(parent=gpu["parent_uuid"], share=gpu.get("share"))
            groups.setdefault(key, []).append(device)
    return [
        {
            "model": model,
            "mig": mig,
            "count": len(devices),
            "joules": round(sum(d["joules"] for d in devices), 3),
            "method": _weakest([d["method"] for d in devices]),
            "devices": devices,
        }
        for (model, mig), devices in sorted(groups.items())
    ]


def _carbon(parts: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Footprints of the parts summed; None when no part has one yet."""
    prints = [p["footprint"] for p in parts if p["footprint"]]
    if not prints:
        return None
    it_j = sum(f["it_energy_j"] for f in prints)
    facility_j = sum(f["facility_energy_j"] for f in prints)
    co2e_g = sum(f["co2e_g"] for f in prints)
    by_rung: dict[str, float] = {}
    for f in prints:
        for rung, joules in f["energy_by_rung_j"].items():
            by_rung[rung] = by_rung.get(rung, 0.0) + joules
    rung = max(by_rung, key=RUNGS.index) if by_rung else "none"
    mix: dict[str, float] = {}
    for name, joules in by_rung.items():
        mix[QUALITY[name]] = mix.get(QUALITY[name], 0.0) + (joules / it_j if it_j else 0.0)
    return {
        "it_energy_j": round(it_j, 3),
        "facility_energy_j": round(facility_j, 3),
        "pue": round(facility_j / it_j, 4) if it_j else None,
        "co2e_g": figures.kept(co2e_g),
        "effective_g_per_kwh": round(co2e_g / (facility_j / J_PER_KWH), 3) if facility_j else 0.0,
        "zone": next((f["zone"] for f in prints if f.get("zone")), None),
        "sources": sorted({s for f in prints for s in f["sources"]}),
        "scopes": sorted({s for f in prints for s in f["scopes"]}),
        "rung": rung,
        "quality": QUALITY.get(rung, "none"),
        "quality_mix": {k: round(v, 4) for k, v in sorted(mix.items(), key=lambda kv: (-kv[1], kv[0]))},
        "measured_intensity_fraction": round(by_rung.get("measured_series", 0.0) / it_j, 4) if it_j else 0.0,
        "energy_by_rung_j": {
            k: round(v, 3) for k, v in sorted(by_rung.items(), key=lambda kv: RUNGS.index(kv[0]))
        },
        **_bounds(parts),
        "parts_without_footprint": [p["node"] for p in parts if not p["footprint"]],
    }


def _bounds(parts: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The low and high ends of the footprinted parts' energy and CO2e (docs/methodology.md#uncertainty):
    each part's from its joules per method and its CO2e per intensity rung, the parts' ends added."""
    found = dict.fromkeys(uncertainty.Bounds.__slots__, 0.0)
    for part in parts:
        f = part["footprint"]
        if not f:
            continue
        band = uncertainty.bounds(
            f["it_energy_j"], f["facility_energy_j"], _joules_by_method(part), _co2e_by_rung(f)
        )
        for name, value in band.as_dict().items():
            found[name] += value
    return {name: round(value, 4 if name.startswith("co2e") else 3) for name, value in found.items()}


def _co2e_by_rung(footprint: dict[str, Any]) -> dict[str, float]:
    """A footprint's CO2e per intensity rung; for footprints stored without it, its CO2e shared out by
    the energy of each rung (or all at the widest rung's band when even that is missing)."""
    if footprint.get("co2e_by_rung_g"):
        return dict(footprint["co2e_by_rung_g"])
    energy = footprint.get("energy_by_rung_j") or {}
    total = sum(energy.values())
    if total <= 0:
        return {"world": footprint["co2e_g"]}
    return {rung: footprint["co2e_g"] * joules / total for rung, joules in energy.items()}


def _joules_by_method(part: dict[str, Any]) -> dict[str, float]:
    """A part's joules per method, from its record's split, else each component's stored method."""
    found: dict[str, float] = {}
    split = part.get("energy_by_method") or {}
    for component in ("cpu", "dram", "gpu"):
        joules, method = part[f"{component}_j"], part[f"{component}_method"]
        pieces = split.get(component) or ({method: joules} if joules and method else {})
        for name, value in pieces.items():
            found[name] = found.get(name, 0.0) + value
    return found


def _coverage(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    wall = sum(p["elapsed_s"] for p in parts)
    covered = sum(p["coverage_fraction"] * p["elapsed_s"] for p in parts)
    prefix = (lambda p: f"{p['node']}: ") if len(parts) > 1 else (lambda p: "")
    return {
        "fraction": round(covered / wall, 4) if wall > 0 else 0.0,
        "partial": any(p["status"] == "partial" for p in parts),
        "reasons": [prefix(p) + r for p in parts for r in p["partial_reasons"]],
        "notes": [prefix(p) + n for p in parts for n in p["notes"]],
    }


def _power(parts: Sequence[dict[str, Any]], start_s: float, end_s: float) -> dict[str, Any]:
    """IT power (energy ÷ time) in up to COLUMNS equal slices of the job; None where nothing was measured.

    A timeline row's energy is spread evenly over the row, as in the footprint; the nodes' powers add.
    """
    n = min(COLUMNS, max((len(p["timeline"]) for p in parts), default=0))
    if n == 0 or end_s <= start_s:
        return {"step_s": 0.0, "watts": [], "peak_w": None, "mean_w": None}
    step = (end_s - start_s) / n
    watts: list[float | None] = [None] * n
    for part in parts:
        energy, covered = _slices(part["timeline"], start_s, step, n)
        for i in range(n):
            if covered[i] > 0:
                watts[i] = (watts[i] or 0.0) + energy[i] / covered[i]
    seen = [w for w in watts if w is not None]
    total_j = sum(p["total_j"] for p in parts)
    return {
        "step_s": round(step, 3),
        "watts": [None if w is None else round(w, 1) for w in watts],
        "peak_w": round(max(seen), 1) if seen else None,
        "mean_w": round(total_j / (end_s - start_s), 1),
    }


def _slices(
    rows: Sequence[Sequence[Any]], start_s: float, step: float, n: int
) -> tuple[list[float], list[float]]:
    """Energy and measured time in each of n slices, from the timeline's running totals.

    A day at 10 s is 8,640 rows a node: the totals are built once (itertools.accumulate) and read at
    the n + 1 slice edges by bisection, instead of visiting every row for every slice.
    """
    rows = [r for r in rows if r[1] > r[0] and not (r[2] is None and r[3] is None and r[4] is None)]
    if not rows:
        return [0.0] * n, [0.0] * n
    starts, ends = [r[0] for r in rows], [r[1] for r in rows]
    joules = [(c or 0.0) + (d or 0.0) + (g or 0.0) for _, _, c, d, g in rows]
    energy_before = [0.0, *itertools.accumulate(joules)]
    time_before = [0.0, *itertools.accumulate(e - s for s, e in zip(starts, ends, strict=True))]

    def totals(t: float) -> tuple[float, float]:
        i = bisect.bisect_right(ends, t)  # rows before i ended by t
        if i < len(rows) and starts[i] < t:  # t inside row i: its share so far
            inside = (t - starts[i]) / (ends[i] - starts[i])
            return energy_before[i] + joules[i] * inside, time_before[i] + (t - starts[i])
        return energy_before[i], time_before[i]

    edges = [totals(start_s + k * step) for k in range(n + 1)]
    energy = [b[0] - a[0] for a, b in itertools.pairwise(edges)]
    covered = [b[1] - a[1] for a, b in itertools.pairwise(edges)]
    return energy, covered


def _equivalent(carbon: dict[str, Any] | None) -> dict[str, Any] | None:
    if carbon is None:
        return None
    return {
        "car_km": figures.round_sig(carbon["co2e_g"] / CAR_G_PER_KM),
        "car_g_per_km": CAR_G_PER_KM,
        "source": CAR_SOURCE,
    }


def _estimates(energy: dict[str, Any], carbon: dict[str, Any] | None) -> list[str]:
    """Plain statements of every figure that is a model or an average rather than a measurement."""
    found = []
    for name in ("cpu", "dram"):
        if (energy[name] or {}).get("method") == "estimated":
            found.append(f"{name.upper()} energy is estimated from a power model")
    for gpu in energy["gpus"]:
        if gpu["method"] == "estimated":
            how = "its share of the parent GPU's measured energy" if gpu["mig"] else "a power model"
            found.append(f"GPU {gpu['model']}{mig_suffix(gpu)} energy is estimated as {how}")
    if carbon is None:
        return found
    for quality, fraction in carbon["quality_mix"].items():
        if quality == "forecast":
            found.append(
                f"intensity for {fraction:.0%} of the energy is a forecast (`jobcarbon recompute` updates it)"
            )
        elif quality != "measured":
            found.append(
                f"intensity for {fraction:.0%} of the energy is a {quality}, not the grid at that time"
            )
    found += [
        f"no footprint yet for {node} (`jobcarbon recompute`)" for node in carbon["parts_without_footprint"]
    ]
    return found


def mig_suffix(gpu: dict[str, Any]) -> str:
    """ " (MIG)" after a MIG slice's model, unless the model says so already."""
    return " (MIG)" if gpu["mig"] and "MIG" not in gpu["model"] else ""
