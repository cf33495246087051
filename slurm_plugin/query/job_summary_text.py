"""The job summary as text: what `jobcarbon <jobid>` prints, from a `job_summary.build` document.

Times are rendered in the site's time zone (accounting.timezone); the document itself stays UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from slurm_plugin import figures
from slurm_plugin.figures import energy as joules
from slurm_plugin.figures import mass as grams
from slurm_plugin.query.job_summary import mig_suffix
from slurm_plugin.times import utc

BARS = "▁▂▃▄▅▆▇█"


def render(summary: dict[str, Any], tz: dt.tzinfo = dt.UTC) -> str:
    """The summary as a user reads it; times in `tz` (accounting.timezone)."""
    lines = [*_header(summary, tz), "", *_energy_lines(summary), "", *_carbon_lines(summary, tz)]
    if summary.get("efficiency"):
        lines += ["", *_efficiency_lines(summary["efficiency"])]
    if summary.get("advice"):
        lines += ["", "advice", *(f"  - {note}" for note in summary["advice"])]
    if summary["estimates"]:
        lines += ["", *(f"* estimate: {e}" for e in summary["estimates"])]
    if summary["state"] == "running":
        lines += ["", *_progress_lines(summary)]
    return "\n".join(lines)


def _efficiency_lines(use: dict[str, Any]) -> list[str]:
    """What the job did with what it held: CPU efficiency, idle cores' energy, memory peak."""
    used, held = duration(use["cpu_time_s"]), duration(use["core_s"])
    cores = f"{use['cpu_efficiency']:.0%} ({used} CPU of {held} core time)"
    idle = joules(use["idle_cpu_j"])
    if use.get("idle_cpu_co2e_g") is not None:
        idle += f", {grams(use['idle_cpu_co2e_g'])} CO2e"
    memory = f"{use['mem_peak_bytes'] / 2**30:.3g} GiB peak"
    if use.get("mem_requested_bytes"):
        memory += (
            f" of {use['mem_requested_bytes'] / 2**30:.3g} GiB requested ({use['mem_used_fraction']:.0%})"
        )
    lines = ["efficiency", _row("CPU", cores), _row("idle cores", idle), _row("memory", memory)]
    lines += [_row(f"GPU {n}", _gpu_line(gpu)) for n, gpu in enumerate(use.get("gpus") or [])]
    if use.get("gpus"):
        waste = joules(use["waste_j"])
        if use.get("waste_co2e_g") is not None:
            waste += f", {grams(use['waste_co2e_g'])} CO2e"
        lines.append(_row("waste", f"{waste} (idle GPUs {joules(use['idle_gpu_j'])} + idle cores)"))
    return lines


def _gpu_line(gpu: dict[str, Any]) -> str:
    """ "util mean 97 %, max 99 %, idle 0 % of the time, 20 GiB peak (GPU-…)"."""
    if gpu["util_mean_pct"] is None:
        return f"utilisation not read ({gpu['id']})"
    return (
        f"util mean {gpu['util_mean_pct']:.0f} %, max {gpu['util_max_pct']} %, "
        f"idle {gpu['idle_fraction'] * 100:.0f} % of the time, "
        f"{gpu['mem_peak_bytes'] / 2**30:.3g} GiB peak ({gpu['id']})"
    )


def _progress_lines(s: dict[str, Any]) -> list[str]:
    """A running job: figures are so far (up to the last snapshot), plus the projection if known."""
    progress = s.get("progress") or {}
    lines = [f"still running: figures up to {s['end']} (the node publishes them every few minutes)"]
    projection = progress.get("projection")
    if projection:
        lines.append(
            f"  at its time limit ({duration(projection['time_limit_s'])}), at the last 15 minutes' "
            f"{projection['recent_power_w']:.0f} W: {projection['energy_j'] / 3.6e6:.3f} kWh, "
            f"{projection['co2e_g'] / 1000:.3f} kg CO2e (projected)"
        )
    elif progress.get("recent_power_w"):
        lines.append(f"  recent power {progress['recent_power_w']:.0f} W (time limit unknown: no projection)")
    return lines


def _header(s: dict[str, Any], tz: dt.tzinfo) -> list[str]:
    runs = ""
    if s["other_runs"]:
        runs = f" (run {s['run'] or s['restart_count']}; {len(s['other_runs'])} other run(s) not included)"
    slurm = s.get("slurm") or {}
    return [
        f"job {s['job_id']} on cluster {s['cluster']}: {_state(s['state'], slurm)}{runs}",
        *_other_runs(s, tz),
        *([_row("name", printable(slurm["job_name"]))] if slurm.get("job_name") else []),
        *([_row("array", _array(slurm))] if slurm.get("array_job_id") is not None else []),
        _row("user", f"{s['user']} (uid {s['uid']})"),
        _row("account", s["account"] or "-"),
        _row("partition", s["partition"] or "-"),
        _row("nodes", f"{len(s['nodes'])}: {', '.join(s['nodes'])}"),
        _row("start", local(s["start"], tz)),
        *(
            [_row("as of", local(s["end"], tz)), _row("so far", duration(s["elapsed_s"]))]
            if s["state"] == "running"
            else [_row("end", local(s["end"], tz)), _row("elapsed", duration(s["elapsed_s"]))]
        ),
    ]


def _state(state: str, slurm: dict[str, Any]) -> str:
    """ "FAILED (exit code 3)", "CANCELLED (signal 15)"; the lifecycle state where Slurm did not say."""
    name = slurm.get("state")
    if name is None:
        return state if slurm.get("exit_code") is None else f"{state} (exit code {slurm['exit_code']})"
    if slurm.get("signal"):
        return f"{name} (exit code {slurm['exit_code']}, signal {slurm['signal']})"
    return f"{name} (exit code {slurm['exit_code']})"


def _array(slurm: dict[str, Any]) -> str:
    return f"task {slurm['array_task_id']} of array {slurm['array_job_id']}"


def printable(text: str, limit: int = 64) -> str:
    """User text (a job name) fit for a terminal: no control or escape characters, bounded."""
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _other_runs(s: dict[str, Any], tz: dt.tzinfo) -> list[str]:
    """The id's other runs (requeues; other jobs Slurm gave the id), each with how to show it."""
    lines = [
        _row("other run", f"{o['run'] or o['restart_count']}, started {local(o['start'], tz)}")
        for o in s["other_runs"]
    ]
    if lines:
        lines.append(_row("", f"show one with: jobcarbon {s['job_id']} --run RUN"))
    return lines


def _row(label: str, value: str) -> str:
    return f"  {label:<11} {value}"


def _energy_lines(s: dict[str, Any]) -> list[str]:
    """One row per component, all in one unit (the largest value's), lined up on the decimal point."""
    energy, carbon = s["energy"], s["carbon"]
    rows: list[tuple[str, float | None, str]] = []
    for name in ("cpu", "dram"):
        if energy[name]:
            rows.append((name.upper(), energy[name]["joules"], _flag(energy[name]["method"])))
        else:
            rows.append((name.upper(), None, "not measured"))
    for gpu in energy["gpus"]:
        label = f"GPU {gpu['model']}{mig_suffix(gpu)} ×{gpu['count']}"
        rows.append((label, gpu["joules"], _flag(gpu["method"])))
    rows.append(("IT energy", energy["total_j"], ""))
    if carbon and carbon["pue"]:
        rows.append((f"facility (PUE {carbon['pue']:.2f})", carbon["facility_energy_j"], ""))
    unit, cells = figures.unit_column([r[1] for r in rows], figures.ENERGY_UNITS)
    width = max(len(r[0]) for r in rows)
    value_width = max(len(c) for c in cells)
    return [f"energy ({unit})"] + [
        f"  {label:<{width}}  {cell:>{value_width}}  {flag}".rstrip()
        for (label, _, flag), cell in zip(rows, cells, strict=True)
    ]


def _flag(method: str | None) -> str:
    return f"{method} *" if method == "estimated" else (method or "")


def _carbon_lines(s: dict[str, Any], tz: dt.tzinfo) -> list[str]:
    carbon, coverage = s["carbon"], s["coverage"]
    lines = ["carbon"]
    if carbon is None:
        lines.append(_row("CO2e", "not computed yet (`jobcarbon recompute`)"))
    else:
        lines += [
            _row(
                "CO2e", f"{grams(carbon['co2e_g'])} at {carbon['effective_g_per_kwh']:.0f} g/kWh (effective)"
            ),
            _row(
                "range",
                f"{grams(carbon['co2e_low_g'])} to {grams(carbon['co2e_high_g'])} CO2e, facility energy "
                f"{joules(carbon['facility_energy_low_j'])} to {joules(carbon['facility_energy_high_j'])}"
                " (uncertainty of the methods used)",
            ),
            _row("zone", carbon["zone"] or "- (no zone configured)"),
            _row("source", f"{', '.join(carbon['sources'])} ({', '.join(carbon['scopes'])})"),
            _row("quality", _quality(carbon)),
        ]
    covered = f"{coverage['fraction']:.0%} of the wall time measured"
    if coverage["partial"]:
        covered += " (partial: " + "; ".join(coverage["reasons"]) + ")"
    lines.append(_row("coverage", covered))
    lines += [_row("note", note) for note in coverage["notes"]]
    power = s["power"]
    if power["watts"]:
        spark = sparkline(power["watts"])
        lines.append(_row("power", f"{spark}  peak {power['peak_w']:.0f} W, mean {power['mean_w']:.0f} W"))
    if s["equivalent"]:
        eq = s["equivalent"]
        by_car = f"≈ {figures.sig(eq['car_km'])} km by car ({eq['car_g_per_km']} g/km: {eq['source']})"
        lines.append(_row("equals", by_car))
    if s["day_range"]:
        lines += _day_lines(s["day_range"], tz)
    return lines


def _quality(carbon: dict[str, Any]) -> str:
    mix = carbon["quality_mix"]
    if len(mix) <= 1:
        return carbon["quality"] + (" *" if carbon["quality"] != "measured" else "")
    return ", ".join(f"{k} {v:.0%}" for k, v in mix.items()) + " *"


def _day_lines(day: dict[str, Any], tz: dt.tzinfo) -> list[str]:
    """The what-if: the same run, as long as the job's, started at the greenest and dirtiest time."""
    fmt = "%H:%M" if day["duration_s"] < 86400 else "%Y-%m-%d %H:%M"

    def window(name: str) -> str:
        found = day[name]
        when = f"{local(found['start'], tz, fmt)}–{local(found['end'], tz, fmt + ' %Z')}"
        return f"{name} {when} at {found['g_per_kwh']:.0f} g/kWh: {grams(found['co2e_g'])} CO2e"

    return [
        _row(
            "same day",
            f"the same run started within ±12 h of its start ({day['slots']} intensity slots) would emit",
        ),
        _row("", window("greenest")),
        _row("", window("dirtiest")),
    ]


def sparkline(watts: Sequence[float | None]) -> str:
    """One bar per value, scaled to the largest; a space where nothing was measured."""
    top = max((w for w in watts if w is not None), default=0.0)
    bars = []
    for w in watts:
        if w is None:
            bars.append(" ")
        else:
            bars.append(
                BARS[min(int(w / top * (len(BARS) - 1) + 0.5), len(BARS) - 1)] if top > 0 else BARS[0]
            )
    return "".join(bars)


def local(iso_text: str, tz: dt.tzinfo, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    return utc(iso_text).astimezone(tz).strftime(fmt)


def duration(seconds: float) -> str:
    """sacct's elapsed notation: [D-]HH:MM:SS."""
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text
