"""The monthly report as text: a table for people, CSV for loading, JSON with its schema.

Numbers are already rounded by `monthly.build`; this module only lays them out, so every format
carries the same figures under the same names (tests/reports/test_monthly.py parses the CSV back).
A CSV is one part of the document (`PARTS`): its columns never change with the data, every line
carries its month, period and cluster, the totals are a part of their own, and numbers are plain
decimals, so CSVs of several months concatenate and load with their sums equal to the totals.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from typing import Any

from slurm_plugin.reports import ledger_text
from slurm_plugin.reports.ledger import SHARE
from slurm_plugin.reports.ledger import TOTAL as LEDGER
from slurm_plugin.reports.monthly import GPU_MODEL, ROW, TOP, TOTAL

PARTS = {"rows": ROW, "totals": TOTAL, "gpu_models": GPU_MODEL, "top_jobs": TOP, "top_users": TOP}
LEDGER_PARTS = {"ledger": LEDGER, "ledger_shares": SHARE}  # in the document's `ledger` section, when there
TABLE_HEADERS = {
    "month": "month",
    "cluster": "cluster",
    "group": "{by}",
    "jobs": "jobs",
    "cpu_core_hours": "core-h",
    "gpu_hours": "GPU-h",
    "cpu_kwh": "CPU kWh",
    "dram_kwh": "DRAM kWh",
    "gpu_kwh": "GPU kWh",
    "it_kwh": "IT kWh",
    "it_kwh_low": "IT kWh low",
    "it_kwh_high": "IT kWh high",
    "facility_kwh": "facility kWh",
    "facility_kwh_low": "facility kWh low",
    "facility_kwh_high": "facility kWh high",
    "co2e_kg": "kg CO2e",
    "co2e_kg_low": "kg CO2e low",
    "co2e_kg_high": "kg CO2e high",
    "lifecycle_co2e_kg": "lifecycle CO2e kg",
    "direct_co2e_kg": "direct CO2e kg",
    "direct_co2_kg": "direct CO2 kg",
    "mixed_basis_kg": "mixed basis kg",
    "market_based_co2e_kg": "market-based kg",
    "effective_g_per_kwh": "g/kWh",
    "co2e_share": "share",
    "measured_energy_share": "energy measured",
    "integrated_energy_share": "energy integrated",
    "apportioned_energy_share": "energy apportioned",
    "estimated_energy_share": "energy estimated",
    "series_intensity_co2e_share": "CO2e from series",
    "embodied_scope3_co2e_kg": "scope 3 kg",
    "waste_kwh": "waste kWh",
    "waste_co2e_kg": "waste kg CO2e",
}
TOTAL_LABEL = "(total)"  # the table's total line, for people; CSV and JSON keep totals apart


# The terminal table's default columns: 100 characters wide with everyday group names; `--wide` and
# the HTML table show every column.
NARROW = frozenset(
    {"month", "cluster", "group", "jobs", "cpu_core_hours", "gpu_hours", "it_kwh", "facility_kwh",
     "co2e_kg", "effective_g_per_kwh", "co2e_share"}
)  # fmt: skip


def _columns(document: dict[str, Any], wide: bool = True) -> list[str]:
    """The table's columns: month and cluster only where the report has several of them."""
    meta = document["metadata"]
    shown = {"month": len(meta["months"]) > 1, "cluster": len({t["cluster"] for t in document["totals"]}) > 1}
    embodied = meta["embodied"] is not None
    return [
        key
        for key in TABLE_HEADERS
        if shown.get(key, True) and (embodied or key != "embodied_scope3_co2e_kg") and (wide or key in NARROW)
    ]


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=False) + "\n"


def to_csv(document: dict[str, Any], part: str = "rows") -> str:
    """One part of the document (`PARTS`): a header of its field names, then a line per entry."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = PARTS.get(part) or LEDGER_PARTS[part]
    writer.writerow(columns)
    writer.writerows([plain(entry[key]) for key in columns] for entry in _entries(document, part))
    return out.getvalue()


def _entries(document: dict[str, Any], part: str) -> list[dict[str, Any]]:
    """A part's entries: the ledger's are in its section, absent for a viewer who may not see it."""
    if part in LEDGER_PARTS:
        ledger = document.get("ledger") or {}
        return list(ledger.get("totals" if part == "ledger" else "shares", []))
    return list(document[part])


def plain(value: Any) -> str:
    """A CSV cell: a float as a plain decimal (never 5e-06), None as empty, the rest as text."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    return str(value)


def to_table_rows(
    document: dict[str, Any], wide: bool = True
) -> tuple[list[str], list[tuple[list[str], bool]]]:
    """Headers, then per month and cluster a line of formatted cells per group and a total line (True);
    the HTML table uses it too."""
    columns = _columns(document, wide)
    headers = [TABLE_HEADERS[key].format(by=document["metadata"]["by"]) for key in columns]
    body: list[tuple[list[str], bool]] = []
    rows = document["rows"]
    for total in document["totals"]:
        for row in rows:
            if row["month"] == total["month"] and row["cluster"] == total["cluster"]:
                body.append(([_cell(key, row[key]) for key in columns], False))
        labelled = {**total, "group": TOTAL_LABEL}
        body.append(([_cell(key, labelled[key]) for key in columns], True))
    return headers, body


def to_table(document: dict[str, Any], wide: bool = False) -> str:
    from tabulate import tabulate

    headers, body = to_table_rows(document, wide)
    lines = [
        *header_lines(document["metadata"]),
        *band_lines(document["totals"]),
        "",
        tabulate([cells for cells, _ in body], headers=headers, disable_numparse=True, stralign="right"),
    ]
    by_model: dict[str, float] = {}
    for entry in document["gpu_models"]:
        by_model[entry["gpu_model"]] = by_model.get(entry["gpu_model"], 0.0) + entry["gpu_hours"]
    if by_model:
        gpus = ", ".join(f"{m} {h:.1f} h" for m, h in sorted(by_model.items()))
        lines.append(f"GPU-hours by model: {gpus}")
    lines += ledger_text.report_lines(document)
    return "\n".join(lines) + "\n"


def period_name(meta: dict[str, Any]) -> str:
    """The report's months as a name: "2026-01", or "2026-01..2026-06" from the first to the last."""
    names = meta["months"]
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


def period_label(meta: dict[str, Any]) -> str:
    count = len(meta["months"])
    return period_name(meta) + ("" if count == 1 else f" ({count} months)")


def header_lines(meta: dict[str, Any]) -> list[str]:
    period = meta["period"]
    lines = [
        f"jobcarbon report {period_label(meta)} by {meta['by']}"
        f" — cluster {', '.join(meta['clusters']) or '-'}",
        f"period {period['start']} .. {period['end']} ({period['time_zone']})"
        + ("" if meta["closed"] else " — month not closed yet"),
        f"showing {meta['visibility']}",
        f"scope: {meta['scope']}; zones {', '.join(meta['zones']) or '-'}; "
        f"sources {'; '.join(meta['sources']) or '-'}",
        *basis_lines(meta),
        f"methodology {meta['methodology_version']}; data as of {meta['generated_at'] or '-'}",
    ]
    if meta["embodied"]:
        lines.append(f"embodied emissions: {meta['embodied']['scope']}, reported apart from scope 2")
    if meta["recomputed"]["footprints"]:
        count = meta["recomputed"]["footprints"]
        lines.append(f"note: {count} footprints of these months were recomputed after their month closed")
    return [part for line in lines for part in textwrap.wrap(line, 100, subsequent_indent="  ")]


def band_lines(totals: list[dict[str, Any]]) -> list[str]:
    """The totals' uncertainty bands in words (the narrow table has no room for their columns)."""
    lines = [
        f"uncertainty {t['month']} {t['cluster']}: {t['co2e_kg']:,.3f} kg CO2e ({t['co2e_kg_low']:,.3f}"
        f" to {t['co2e_kg_high']:,.3f}), facility {t['facility_kwh']:,.3f} kWh ({t['facility_kwh_low']:,.3f}"
        f" to {t['facility_kwh_high']:,.3f}); energy measured {(t['measured_energy_share'] or 0) * 100:.1f}%"
        for t in totals
    ]
    return [part for line in lines for part in textwrap.wrap(line, 100, subsequent_indent="  ")]


def basis_lines(meta: dict[str, Any]) -> list[str]:
    """What the grams count, per source, and whether kg CO2e adds different things; the market-based
    figure's contractual factors."""
    bases = {(b["emission_factor"], b["gas"]) for b in meta["emission_bases"]}
    named = "; ".join(f"{b['source']}: {b['emission_factor']} {b['gas']}" for b in meta["emission_bases"])
    lines = [f"emission factors: {named or '-'}"]
    if len(bases) > 1 or any(gas == "CO2" for _, gas in bases):
        lines.append(
            "note: kg CO2e adds figures of different bases (lifecycle or direct, CO2e or CO2 alone);"
            " the lifecycle/direct CO2e, direct CO2 and mixed-basis columns split it"
        )
    market = "; ".join(
        f"{f['instrument']} {f['g_co2e_per_kwh']:g} g/kWh"
        + (f" ({f['cluster']})" if f["cluster"] else "")
        + (f" from {f['start']}" if f["start"] else "")
        + (f" until {f['end']}" if f["end"] else "")
        for f in meta["market_based"]
    )
    lines.append(
        f"market-based scope 2: {market}"
        if market
        else "market-based scope 2: no contractual factor configured"
    )
    return lines


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in ("month", "cluster", "group", "jobs"):
        return str(value)
    if key.endswith("_share"):
        return f"{value * 100:.1f}%"
    if key == "effective_g_per_kwh":
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"


FORMATS = {"table": to_table, "csv": to_csv, "json": to_json}
