"""The monthly report as one self-contained HTML file: a bar chart per group, the month's intensity
curve and the table, for people. Charts are matplotlib SVG inlined in the page, with text drawn as
paths (`svg.fonttype: path`): no script, stylesheet, font or image is fetched, so it reads offline.
matplotlib is the optional extra `jobcarbon[report]`; importing this module without it fails. It only
renders: the document and the curves come from `monthly.build` and `monthly.intensity_curves`.
"""

from __future__ import annotations

import datetime as dt
import html
import io
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # no display on a head node or in a timer
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from slurm_plugin.reports import formats
from slurm_plugin.reports.monthly import Curve

MAX_BARS = 30  # more groups than this are summed into "others" in the chart (the table has them all)
STYLE = """body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}
td:first-child{text-align:left}
tr.total td{font-weight:bold}.meta{color:#555;font-size:14px}figure{margin:1em 0}"""


def render(document: dict[str, Any], curves: dict[str, Curve]) -> str:
    """The page: the report document, and its zones' intensity curves over the month."""
    meta = document["metadata"]
    title = f"jobcarbon {meta['month']} by {meta['by']}"
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<div class="meta">' + "<br>".join(html.escape(line) for line in formats.header_lines(meta)),
        "</div>",
        f'<figure id="groups-chart">{_svg(_bars(document))}</figure>',
        f'<figure id="intensity-chart">{_svg(_intensity(curves, meta["period"]["time_zone"]))}</figure>',
        _table(document),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _bars(document: dict[str, Any]) -> Figure:
    rows = [r for r in document["rows"] if r["co2e_kg"] > 0] or document["rows"][:1]
    shown = rows[:MAX_BARS]
    labels, values = [r["group"] for r in shown], [r["co2e_kg"] for r in shown]
    rest = sum(r["co2e_kg"] for r in rows[MAX_BARS:])
    if rest:
        labels.append(f"{len(rows) - MAX_BARS} others")
        values.append(rest)
    figure, axes = plt.subplots(figsize=(9, 0.3 * len(labels) + 1.2))
    axes.barh(labels[::-1], values[::-1], color="#4a7f5a")
    axes.set_xlabel("kg CO2e (location-based scope 2)")
    axes.set_title(f"CO2e by {document['metadata']['by']}")
    figure.tight_layout()
    return figure


def _intensity(curves: dict[str, Curve], timezone: str) -> Figure:
    figure, axes = plt.subplots(figsize=(9, 3))
    zone = ZoneInfo(timezone)
    for name, points in curves.items():
        xs, ys = [], []
        for start_s, end_s, g_per_kwh, _forecast in points:
            xs += [dt.datetime.fromtimestamp(start_s, zone), dt.datetime.fromtimestamp(end_s, zone)]
            ys += [g_per_kwh, g_per_kwh]
        axes.plot(xs, ys, linewidth=0.8, label=name)  # type: ignore[arg-type]  # datetimes: matplotlib's units
    if not any(curves.values()):
        axes.text(
            0.5, 0.5, "no stored intensity series for this month", ha="center", transform=axes.transAxes
        )
        axes.set_xticks([])
        axes.set_yticks([])
    else:
        axes.legend(loc="upper right")
    axes.set_ylabel("gCO2e/kWh")
    axes.set_title(f"Grid carbon intensity ({timezone})")
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "jobcarbon"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline in HTML


def _table(document: dict[str, Any]) -> str:
    text_rows = formats.to_table_rows(document)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in text_rows[0])
    body = []
    for i, cells in enumerate(text_rows[1:]):
        css = ' class="total"' if i == len(text_rows) - 2 else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f'<table id="report-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
