#!/usr/bin/env python3
"""jobcarbon's Grafana dashboards, built as code with grafana-foundation-sdk and exported to JSON here.

    python3 config/grafana/build.py           rewrite config/grafana/*.json
    python3 config/grafana/build.py --check   exit 1 if a committed file differs from what is built

Every panel queries a Prometheus data source chosen by the `datasource` variable; the metrics are
described in docs/monitoring.md. tests/test_grafana.py checks the committed JSON against this script
and reads it back through the SDK's models; tests/e2e/test_prometheus.py runs every panel's queries
against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    AxisPlacement,
    LegendDisplayMode,
    LegendPlacement,
    TooltipDisplayMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef, DynamicConfigValue

HERE = Path(__file__).resolve().parent
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"
# Node power in W times the intensity in use, in g/kWh: g/s * 3600 / 3.6e6 J per kWh = g/h / 1000.
POWER = f"sum(rate(jobcarbon_node_energy_joules_total{RATE}))"
CO2E_RATE = f"{POWER} * max(jobcarbon_grid_intensity_g_per_kwh) / 1000"
LAST = common.ReduceDataOptions().calcs(["lastNotNull"])
LEGEND = common.VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST)
LEGEND = LEGEND.placement(LegendPlacement.BOTTOM)
TOOLTIP = common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI)


def _query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    return query.legend_format(legend) if legend else query


def _series(title: str, unit: str, *queries: prometheus.Dataquery, stacked: bool = False) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).min(0).span(12).height(8)
    panel = panel.fill_opacity(30 if stacked else 10).legend(LEGEND).tooltip(TOOLTIP)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _stat(title: str, unit: str, expr: str, legend: str = "") -> stat.Panel:
    panel = stat.Panel().title(title).unit(unit).datasource(DATASOURCE).span(6).height(4).reduce_options(LAST)
    return panel.with_target(_query(expr, legend))


def _top(title: str, unit: str, expr: str, legend: str) -> bargauge.Panel:
    panel = bargauge.Panel().title(title).unit(unit).datasource(DATASOURCE).span(12).height(8).min(0)
    panel = panel.orientation(VizOrientation.HORIZONTAL).reduce_options(LAST)
    return panel.with_target(_query(expr, legend).instant())


def _dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["jobcarbon"])
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )


def cluster() -> dashboard.Dashboard:
    return (
        _dashboard(
            "jobcarbon-cluster", "jobcarbon: cluster", "Power, CO2e and intensity of the whole cluster."
        )
        .with_row(dashboard.Row("Now"))
        .with_panel(_stat("Power", "watt", POWER))
        .with_panel(_stat("CO2e rate (IT energy)", "massg", CO2E_RATE))
        .with_panel(_stat("Jobs measured", "none", "sum(jobcarbon_agent_jobs)"))
        .with_panel(
            _stat("Grid intensity", "none", "max by (zone) (jobcarbon_grid_intensity_g_per_kwh)", "{{zone}}")
        )
        .with_row(dashboard.Row("Power"))
        .with_panel(
            _series(
                "Power by component",
                "watt",
                _query(
                    f"sum by (component) (rate(jobcarbon_node_energy_joules_total{RATE}))", "{{component}}"
                ),
                stacked=True,
            )
        )
        .with_panel(
            _series(
                "Jobs' power by partition",
                "watt",
                _query(
                    f"sum by (partition) (rate(jobcarbon_job_energy_joules_total{RATE}))", "{{partition}}"
                ),
                stacked=True,
            )
        )
        .with_panel(_series("CO2e rate of IT energy (g/h)", "none", _query(CO2E_RATE, "g/h")))
        .with_panel(
            _series(
                "Grid intensity in use (g/kWh)",
                "none",
                _query("jobcarbon_grid_intensity_g_per_kwh", "{{zone}} {{source}} ({{quality}})"),
            )
        )
        .with_row(dashboard.Row("This month"))
        .with_panel(
            _top(
                "Top accounts, CO2e this month (kg)",
                "none",
                "topk(10, jobcarbon_account_month_co2e_grams) / 1000",
                "{{account}}",
            )
        )
        .with_panel(
            _top(
                "Top accounts, energy this month (kWh)",
                "none",
                "topk(10, jobcarbon_account_month_energy_joules) / 3.6e6",
                "{{account}}",
            )
        )
    )


def job() -> dashboard.Dashboard:
    selector = '{jobid="$jobid"}'
    intensity = _query("max(jobcarbon_grid_intensity_g_per_kwh)", "intensity (g/kWh)", ref="B")
    power = _series(
        "Power per component, with grid intensity",
        "watt",
        _query(
            f"sum by (component) (rate(jobcarbon_job_energy_joules_total{selector}{RATE}))", "{{component}}"
        ),
        intensity,
    ).override_by_query("B", [DynamicConfigValue("custom.axisPlacement", AxisPlacement.RIGHT), _unit("none")])
    return (
        _dashboard("jobcarbon-job", "jobcarbon: job", "One running job's power, per component and GPU.")
        .with_variable(dashboard.TextBoxVariable("jobid").label("Job id"))
        .with_row(dashboard.Row("Job $jobid"))
        .with_panel(
            _stat(
                "Energy so far (kWh)",
                "none",
                f"sum by (component) (jobcarbon_job_energy_joules_total{selector}) / 3.6e6",
                "{{component}}",
            )
        )
        .with_panel(
            _stat(
                "CPU efficiency",
                "percentunit",
                f"sum(rate(jobcarbon_job_cpu_seconds_total{selector}{RATE}))"
                f" / sum(jobcarbon_job_allocated_cpus{selector})",
            )
        )
        .with_panel(
            _stat(
                "Energy per CPU-hour (Wh)",
                "none",
                f"sum(jobcarbon_job_energy_joules_total{selector}) / 3600"
                f" / (sum(jobcarbon_job_cpu_seconds_total{selector}) / 3600)",
            )
        )
        .with_panel(_stat("Nodes", "none", f"count(jobcarbon_job_allocated_cpus{selector})"))
        .with_panel(power)
        .with_panel(
            _series(
                "Power per GPU",
                "watt",
                _query(
                    f"sum by (gpu) (rate(jobcarbon_job_gpu_energy_joules_total{selector}{RATE}))", "{{gpu}}"
                ),
            )
        )
    )


def operations() -> dashboard.Dashboard:
    failed = 'jobcarbon_agent_deliveries_total{result="failed"}'
    return (
        _dashboard(
            "jobcarbon-operations", "jobcarbon: operations", "Node agents, delivery and data freshness."
        )
        .with_row(dashboard.Row("Agents"))
        .with_panel(_stat("Agents running", "none", "count(jobcarbon_agent_start_time_seconds)"))
        .with_panel(_stat("Records waiting in outboxes", "none", "sum(jobcarbon_agent_outbox_records)"))
        .with_panel(_stat("Stale nodes (database)", "none", "jobcarbon_stale_nodes"))
        .with_panel(_stat("Sensors failing", "none", "count(jobcarbon_agent_sensor_ok == 0) or vector(0)"))
        .with_panel(
            _series(
                "Mean tick duration",
                "s",
                _query(
                    f"rate(jobcarbon_agent_tick_seconds_total{RATE})"
                    f" / rate(jobcarbon_agent_ticks_total{RATE})",
                    "{{instance}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Seconds since the last tick",
                "s",
                _query("time() - jobcarbon_agent_last_tick_timestamp_seconds", "{{instance}}"),
            )
        )
        .with_row(dashboard.Row("Delivery"))
        .with_panel(
            _series("Outbox backlog", "none", _query("jobcarbon_agent_outbox_records", "{{instance}}"))
        )
        .with_panel(
            _series("Failed deliveries per hour", "none", _query(f"increase({failed}[1h])", "{{instance}}"))
        )
        .with_panel(
            _series(
                "Seconds since the last successful delivery",
                "s",
                _query("time() - jobcarbon_agent_last_delivery_timestamp_seconds", "{{instance}}"),
            )
        )
        .with_panel(
            _series(
                "Age of each node's newest data in the database",
                "s",
                _query("time() - jobcarbon_node_newest_data_timestamp_seconds", "{{node}}"),
            )
        )
        .with_panel(
            _series(
                "Age of the stored intensity series",
                "s",
                _query("time() - jobcarbon_grid_intensity_data_end_timestamp_seconds", "{{zone}}"),
            )
        )
        .with_panel(_series("Exporter query time", "s", _query("jobcarbon_exporter_scrape_seconds")))
    )


def _unit(unit: str) -> DynamicConfigValue:
    return DynamicConfigValue("unit", unit)


DASHBOARDS = {
    "jobcarbon-cluster.json": cluster,
    "jobcarbon-job.json": job,
    "jobcarbon-operations.json": operations,
}


def render(build: Any) -> str:
    """A dashboard's JSON as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(build().build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def panel_queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel in a dashboard's JSON."""
    return [
        (panel["title"], target["expr"])
        for panel in document["panels"]
        for target in panel.get("targets") or []
        if "expr" in target
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files, write nothing"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = HERE / name, render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)} (run python3 config/grafana/build.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
