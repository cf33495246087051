"""The monthly report as one self-contained HTML file, for people: a bar chart per group, over several
months a trend chart and each group's month-over-month change, the intensity curve, the largest jobs
and users, and the table. Charts are matplotlib SVG inlined in the page, with text drawn as
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

from slurm_plugin.reports import formats, ledger_html
from slurm_plugin.reports.monthly import Curve

MAX_BARS = 30  # more groups than this are summed into "others" in the chart (the table has them all)
TREND_LINES = 8  # the trend chart draws the total and this many largest groups
STYLE = """body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}
td:first-child{text-align:left}
tr.total td{font-weight:bold}h2{font-size:17px}.meta{color:#555;font-size:14px}figure{margin:1em 0}"""


def render(document: dict[str, Any], curves: dict[str, Curve]) -> str:
    """The page: the report document, and its zones' intensity curves over the month."""
    meta = document["metadata"]
    title = f"jobcarbon {formats.period_label(meta)} by {meta['by']}"
    several = len(meta["months"]) > 1
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<div class="meta">'
        + "<br>".join(
            html.escape(line)
            for line in (*formats.header_lines(meta), *formats.band_lines(document["totals"]))
        ),
        "</div>",
        f'<figure id="groups-chart">{_svg(_bars(document))}</figure>',
        f'<figure id="trend-chart">{_svg(_trend(document))}</figure>' if several else "",
        _changes(document) if several else "",
        f'<figure id="intensity-chart">{_svg(_intensity(curves, meta["period"]["time_zone"]))}</figure>',
        _tops(document),
        _table(document),
        ledger_html.section(document),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _per_group(document: dict[str, Any]) -> dict[str, dict[str, float]]:
    """kg CO2e per group and month, all clusters together, largest group over the period first."""
    found: dict[str, dict[str, float]] = {}
    for row in document["rows"]:
        months = found.setdefault(row["group"], {})
        months[row["month"]] = months.get(row["month"], 0.0) + row["co2e_kg"]
    return dict(sorted(found.items(), key=lambda item: (-sum(item[1].values()), item[0])))


def _bars(document: dict[str, Any]) -> Figure:
    groups = {g: sum(m.values()) for g, m in _per_group(document).items()}
    rows = [(g, kg) for g, kg in groups.items() if kg > 0] or list(groups.items())[:1]
    shown = rows[:MAX_BARS]
    labels, values = [g for g, _ in shown], [kg for _, kg in shown]
    rest = sum(kg for _, kg in rows[MAX_BARS:])
    if rest:
        labels.append(f"{len(rows) - MAX_BARS} others")
        values.append(rest)
    figure, axes = plt.subplots(figsize=(9, 0.3 * len(labels) + 1.2))
    axes.barh(labels[::-1], values[::-1], color="#4a7f5a")
    axes.set_xlabel(f"kg CO2e ({document['metadata']['scope']})")
    axes.set_title(f"CO2e by {document['metadata']['by']}, {formats.period_label(document['metadata'])}")
    figure.tight_layout()
    return figure


def _trend(document: dict[str, Any]) -> Figure:
    """kg CO2e per month: all groups, and the largest groups each."""
    names = document["metadata"]["months"]
    figure, axes = plt.subplots(figsize=(9, 3.5))
    total = dict.fromkeys(names, 0.0)
    for entry in document["totals"]:
        total[entry["month"]] += entry["co2e_kg"]
    axes.plot(names, [total[m] for m in names], color="#222", linewidth=2, marker="o", label="all")
    for group, months in list(_per_group(document).items())[:TREND_LINES]:
        axes.plot(names, [months.get(m, 0.0) for m in names], linewidth=1, marker=".", label=group)
    axes.set_ylabel("kg CO2e")
    axes.set_title(f"CO2e per month by {document['metadata']['by']}")
    axes.legend(loc="upper left", fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


def _changes(document: dict[str, Any]) -> str:
    """kg CO2e per group and month, with the change from the month before in percent."""
    names = document["metadata"]["months"]
    head = "<th>group</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in names)
    lines = []
    for group, months in _per_group(document).items():
        cells, before = [f"<td>{html.escape(group)}</td>"], None
        for month in names:
            kg = months.get(month, 0.0)
            change = f" ({(kg - before) / before * 100:+.0f}%)" if before else ""
            cells.append(f"<td>{kg:.3f}{change}</td>")
            before = kg
        lines.append(f"<tr>{''.join(cells)}</tr>")
    return (
        "<h2>kg CO2e per month (change from the month before)</h2>"
        f'<table id="change-table"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
    )


def _tops(document: dict[str, Any]) -> str:
    """The largest jobs and users per month and group, where the report lists them."""
    parts = []
    for part, title in (("top_jobs", "job"), ("top_users", "user")):
        if not document[part]:
            continue
        head = "".join(
            f"<th>{h}</th>" for h in ("month", "cluster", "group", "#", title, "kg CO2e", "facility kWh")
        )
        lines = [
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(e[key]))}</td>"
                for key in ("month", "cluster", "group", "place", "item")
            )
            + f"<td>{e['co2e_kg']:.3f}</td><td>{e['facility_kwh']:.3f}</td></tr>"
            for e in document[part]
        ]
        parts.append(
            f"<h2>Largest {title}s per {document['metadata']['by']} and month</h2>"
            f'<table id="{part}"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
        )
    return "\n".join(parts)


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
    headers, body = formats.to_table_rows(document)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    lines = [
        ('<tr class="total">' if total else "<tr>")
        + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        + "</tr>"
        for cells, total in body
    ]
    return f'<table id="report-table"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
