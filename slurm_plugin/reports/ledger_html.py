"""The node ledger's part of the HTML report: per month and cluster, jobs + remainder = node IT energy,
and x PUE the facility energy; then the remainder per group under both policies, side by side. Plain
tables (no chart): the figures are the ones `reports.ledger.section` rounded."""

from __future__ import annotations

import html
from typing import Any

from slurm_plugin.reports.ledger import IDLE


def section(document: dict[str, Any]) -> str:
    """The HTML of the ledger section; empty where the report has none (a viewer of some jobs only)."""
    ledger = document.get("ledger")
    if not ledger or not ledger["totals"]:
        return ""
    parts = [
        '<h2 id="ledger">Node ledger: jobs + remainder = node IT energy</h2>',
        '<table id="ledger-totals"><tr><th>month</th><th>cluster</th><th>nodes</th><th>jobs kWh</th>'
        "<th>+ remainder kWh</th><th>= node IT kWh</th><th>× PUE</th><th>= facility kWh</th>"
        "<th>job records kWh</th></tr>",
    ]
    for t in ledger["totals"]:
        cells = (t["month"], t["cluster"], t["nodes"], t["jobs_kwh"], t["remainder_kwh"], t["measured_kwh"],
                 t["pue"], t["facility_kwh"], t["job_records_kwh"])  # fmt: skip
        parts.append("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    parts.append(
        f"<p>Policy <code>none</code>: the remainder is its own line. Policy <code>proportional</code>: each "
        f"node interval's remainder is shared among its jobs by {html.escape(ledger['share_by'])}; "
        f"intervals without jobs stay <em>{html.escape(IDLE)}</em>.</p>"
    )
    parts.append(
        '<table id="ledger-shares"><tr><th>month</th><th>cluster</th><th>group</th><th>none: jobs kWh</th>'
        "<th>remainder share kWh</th><th>proportional: kWh</th></tr>"
    )
    for s in ledger["shares"]:
        row = [
            s[key] for key in ("month", "cluster", "group", "jobs_kwh", "remainder_kwh", "with_remainder_kwh")
        ]
        parts.append("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return html.escape(str(value))
