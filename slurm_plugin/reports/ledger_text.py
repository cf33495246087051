"""The node ledger as text: the report table's reconciliation lines, and `jobcarbon report --reconcile`,
which sets the ledger's facility energy beside a site meter's figure (`--meter-kwh`).

Only lays out what `reports.ledger.section` computed; the figures are rounded there.
"""

from __future__ import annotations

from typing import Any

from slurm_plugin.reports.ledger import IDLE

SCHEMA = "jobcarbon/reconcile/1"
HEADERS = {
    "month": "month",
    "cluster": "cluster",
    "nodes": "nodes",
    "node_hours": "node-h",
    "measured_kwh": "node IT kWh",
    "jobs_kwh": "jobs kWh",
    "remainder_kwh": "remainder kWh",
    "job_records_kwh": "job records kWh",
    "pue": "PUE",
    "facility_kwh": "facility kWh",
}


def table(ledger: dict[str, Any]) -> str:
    """Per month and cluster: jobs + remainder = node IT energy, x PUE = facility energy."""
    from tabulate import tabulate

    body = [[_cell(total[key]) for key in HEADERS] for total in ledger["totals"]]
    return tabulate(body, headers=list(HEADERS.values()), disable_numparse=True, stralign="right")


def report_lines(document: dict[str, Any]) -> list[str]:
    """The lines the report's table ends with: the ledger, and the remainder shared by each policy."""
    ledger = document.get("ledger")
    if not ledger or not ledger["totals"]:
        return []
    lines = ["", "Node ledger (jobs + remainder = node IT energy; x PUE = facility energy):", table(ledger)]
    shared = [s for s in ledger["shares"] if s["group"] != IDLE and s["remainder_kwh"]]
    if shared:
        lines.append(f"Remainder shared by {ledger['share_by']} (policy `proportional`), kWh:")
        lines.append(", ".join(f"{s['group']} {s['remainder_kwh']:.3f}" for s in shared))
    return lines


def reconcile(document: dict[str, Any], meter_kwh: float | None) -> dict[str, Any]:
    """The `--reconcile` document: the ledger's totals and, given a meter figure for the whole period,
    how far the ledger's facility energy is from it."""
    totals = document["ledger"]["totals"] if document.get("ledger") else []
    facility = round(sum(t["facility_kwh"] for t in totals), 6)
    meter = None
    if meter_kwh is not None:
        difference = round(meter_kwh - facility, 6)
        meter = {
            "meter_kwh": meter_kwh,
            "ledger_facility_kwh": facility,
            "difference_kwh": difference,
            "difference_share": round(difference / meter_kwh, 6) if meter_kwh > 0 else None,
        }
    return {"schema": SCHEMA, "months": document["metadata"]["months"], "totals": totals, "meter": meter}


def reconcile_text(found: dict[str, Any]) -> str:
    lines = [f"Node ledger, {', '.join(found['months'])}", table({"totals": found["totals"]})]
    if not found["totals"]:
        lines.append("(no node ledger intervals in this period: is the agent keeping them? docs/reports.md)")
    meter = found["meter"]
    if meter is not None:
        share = meter["difference_share"]
        lines.append(
            f"site meter {meter['meter_kwh']:.3f} kWh, "
            f"ledger facility {meter['ledger_facility_kwh']:.3f} kWh: "
            f"{meter['difference_kwh']:+.3f} kWh unaccounted"
            + (f" ({share:+.1%} of the meter)" if share is not None else "")
        )
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
