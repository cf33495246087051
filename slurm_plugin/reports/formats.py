"""The monthly report as text: a table for people, CSV for spreadsheets, JSON with its schema.

Numbers are already rounded by `monthly.build`; this module only lays them out, so every format
carries the same figures (tests/reports/test_monthly.py parses the CSV back).
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from typing import Any

# (key, CSV column / table header); GPU-hours per model follow as `gpu_hours[MODEL]` columns.
COLUMNS = (
    ("group", "group"),
    ("jobs", "jobs"),
    ("cpu_core_hours", "cpu_core_hours"),
    ("gpu_hours", "gpu_hours"),
    ("cpu_kwh", "cpu_kwh"),
    ("dram_kwh", "dram_kwh"),
    ("gpu_kwh", "gpu_kwh"),
    ("it_kwh", "it_kwh"),
    ("facility_kwh", "facility_kwh"),
    ("co2e_kg", "co2e_kg"),
    ("effective_g_per_kwh", "effective_g_per_kwh"),
    ("co2e_share", "co2e_share"),
    ("measured_energy_share", "measured_energy_share"),
    ("series_intensity_co2e_share", "series_intensity_co2e_share"),
    ("embodied_co2e_kg", "embodied_scope3_co2e_kg"),
)
TABLE_HEADERS = {
    "group": "{by}",
    "jobs": "jobs",
    "cpu_core_hours": "core-h",
    "gpu_hours": "GPU-h",
    "cpu_kwh": "CPU kWh",
    "dram_kwh": "DRAM kWh",
    "gpu_kwh": "GPU kWh",
    "it_kwh": "IT kWh",
    "facility_kwh": "facility kWh",
    "co2e_kg": "kg CO2e",
    "effective_g_per_kwh": "g/kWh",
    "co2e_share": "share",
    "measured_energy_share": "energy measured",
    "series_intensity_co2e_share": "CO2e from series",
    "embodied_co2e_kg": "scope 3 kg",
}


# The terminal table's default columns: 100 characters wide with everyday group names; `--wide` and
# the HTML table show every column.
NARROW = frozenset(
    {"group", "jobs", "cpu_core_hours", "gpu_hours", "it_kwh", "facility_kwh", "co2e_kg",
     "effective_g_per_kwh", "co2e_share"}
)  # fmt: skip


def _columns(document: dict[str, Any], wide: bool = True) -> list[tuple[str, str]]:
    embodied = document["metadata"]["embodied"] is not None
    return [c for c in COLUMNS if (embodied or c[0] != "embodied_co2e_kg") and (wide or c[0] in NARROW)]


def models(document: dict[str, Any]) -> list[str]:
    return sorted(document["totals"]["gpu_hours_by_model"])


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=False) + "\n"


def to_csv(document: dict[str, Any]) -> str:
    """One line per group then `total`; metadata stays in JSON (a CSV has no place for it)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns, gpu_models = _columns(document), models(document)
    writer.writerow([name for _, name in columns] + [f"gpu_hours[{m}]" for m in gpu_models])
    for row in [*document["rows"], document["totals"]]:
        cells = ["" if row[key] is None else row[key] for key, _ in columns]
        writer.writerow(cells + [row["gpu_hours_by_model"].get(m, 0.0) for m in gpu_models])
    return out.getvalue()


def to_table_rows(document: dict[str, Any], wide: bool = True) -> list[list[str]]:
    """Headers, then a line of formatted cells per group and the totals (the HTML table uses it too)."""
    columns = _columns(document, wide)
    headers = [TABLE_HEADERS[key].format(by=document["metadata"]["by"]) for key, _ in columns]
    body = [[_cell(key, row[key]) for key, _ in columns] for row in [*document["rows"], document["totals"]]]
    return [headers, *body]


def to_table(document: dict[str, Any], wide: bool = False) -> str:
    from tabulate import tabulate

    headers, *body = to_table_rows(document, wide)
    lines = [
        *header_lines(document["metadata"]),
        "",
        tabulate(body, headers=headers, disable_numparse=True, stralign="right"),
    ]
    if document["totals"]["gpu_hours_by_model"]:
        gpus = ", ".join(f"{m} {h:.1f} h" for m, h in document["totals"]["gpu_hours_by_model"].items())
        lines.append(f"GPU-hours by model: {gpus}")
    return "\n".join(lines) + "\n"


def header_lines(meta: dict[str, Any]) -> list[str]:
    period = meta["period"]
    lines = [
        f"jobcarbon monthly report {meta['month']} by {meta['by']}"
        f" — cluster {', '.join(meta['clusters']) or '-'}",
        f"period {period['start']} .. {period['end']} ({period['time_zone']})"
        + ("" if meta["closed"] else " — month not closed yet"),
        f"scope: {meta['scope']}; zones {', '.join(meta['zones']) or '-'}; "
        f"sources {'; '.join(meta['sources']) or '-'}",
        f"methodology {meta['methodology_version']}; data as of {meta['generated_at'] or '-'}",
    ]
    if meta["embodied"]:
        lines.append(f"embodied emissions: {meta['embodied']['scope']}, reported apart from scope 2")
    if meta["recomputed"]["footprints"]:
        count = meta["recomputed"]["footprints"]
        lines.append(f"note: {count} footprints of this month were recomputed after it closed")
    return [part for line in lines for part in textwrap.wrap(line, 100, subsequent_indent="  ")]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in ("group", "jobs"):
        return str(value)
    if key.endswith("_share"):
        return f"{value * 100:.1f}%"
    if key == "effective_g_per_kwh":
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"


FORMATS = {"table": to_table, "csv": to_csv, "json": to_json}
