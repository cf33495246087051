"""The monthly report's reads (`reports/monthly.py`): months' footprint figures per cluster and group.

The figures come from footprint_months, which accounting writes with each footprint: a job's energy
counts in the month of the site's time zone in which it was used. One GROUP BY over the current
footprints' months, for all the months asked at once, on that table alone: each footprint month carries
its job's keys (migration 14), as joining footprints, parts and jobs row by row cost most of a year's
report over ten million jobs (bench/monthly_report.py). Every read that names jobs takes the viewer's
`visible` condition (`readonly.visible_filter`), so a report shows a viewer what `jobcarbon jobs` would.
Text is ordered by the caller, not by ORDER BY: PostgreSQL sorts by the server's collation (en_US puts
"atlas" before "Vega"), SQLite by code point, and a report must not depend on the backend.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from slurm_plugin.storage import rollups, schema
from slurm_plugin.storage.readonly import Reader

# The report's groupings and their column; `group` is the Unix group by gid, for sites that bill by group.
GROUP_COLUMNS = {"account": "j.account", "user": "j.user_name", "group": "j.gid", "partition": "j.partition"}
# ... the same columns in footprint_months (_CURRENT) and in jobs (group_keys).
SUMS = schema.FOOTPRINT_MONTH_SUMS
WASTE_SUMS = schema.FOOTPRINT_MONTH_WASTE
Visible = tuple[str, dict[str, Any]]  # readonly.visible_filter's WHERE condition and its parameters
Key = tuple[str, str, Any]  # (month, cluster, group key)
EVERYTHING: Visible = ("1 = 1", {})
# One table: footprint_months carries each part's job keys (schema.FOOTPRINT_MONTH_KEYS), so it stands in
# for the jobs table (alias j) in the groupings and in the viewer's condition; joining footprints, parts
# and jobs row by row cost a year of ten million jobs most of its time (docs/benchmarks.md).
_CURRENT = rollups.CURRENT
_GROUPS = (
    "SELECT j.month, j.cluster, {col} AS grp, COUNT(DISTINCT j.job) AS jobs, "
    + ", ".join(f"SUM(j.{name}) AS {name}" for name in SUMS)
    + "".join(f", SUM({sql}) AS {name}" for name, sql in WASTE_SUMS.items())
    + "{bases}, MAX(j.computed_at_s) AS computed_s, MAX(j.received_at_s) AS received_s "
    + _CURRENT
    + " GROUP BY j.month, j.cluster, grp"
)
# The same from the months' rollups (storage/rollups.py), which carry the job keys the groupings and the
# viewer's condition name; a job is in one rollup row a month, so its rows' job counts add up.
_ROLLED = "FROM {table} j WHERE j.month IN ({months}) AND j.level = :level AND {visible}"
_ROLLED_GROUPS = (
    "SELECT j.month, j.cluster, {col} AS grp, SUM(j.jobs) AS jobs, "
    + ", ".join(f"SUM(j.{name}) AS {name}" for name in (*SUMS, *WASTE_SUMS))
    + ", MAX(j.computed_s) AS computed_s, MAX(j.received_s) AS received_s "
    + _ROLLED.format(table="month_rollups", months="{months}", visible="{visible}")
    + " GROUP BY j.month, j.cluster, grp"
)
_ROLLED_BASES = (
    "SELECT j.month, j.cluster, {col} AS grp{bases} "
    + _ROLLED.format(table="month_rollup_sources", months="{months}", visible="{visible}")
    + " GROUP BY j.month, j.cluster, grp"
)
_GPU_MODELS = "SELECT j.month, j.cluster, {col} AS grp, j.gpu_hours_json {source} AND j.gpu_hours > 0"
TOP_ITEMS = rollups.TOP_ITEMS
_SOURCES = """SELECT DISTINCT m.zone, m.sources_json FROM footprint_months m
WHERE m.month IN ({months}) AND m.is_current = 1"""
# Every level of rollup rows holds every zone and set of sources: the accounts' level is the smallest.
_ROLLED_SOURCES = """SELECT DISTINCT m.zone, m.sources_json FROM month_rollup_sources m
WHERE m.month IN ({months}) AND m.level = 'account'"""
_FACTORS = """SELECT DISTINCT source, scope FROM intensity
WHERE zone IN ({zones}) AND start_s < :end_s AND end_s > :start_s"""
_CLUSTERS = """SELECT DISTINCT j.cluster FROM jobs j
WHERE j.end_s >= :month_start AND j.start_s < :month_end AND {visible}"""
_RECOMPUTED = """SELECT j.month, j.cluster, j.job_id, p.node, f.version, f.computed_at_s
FROM footprint_months j JOIN footprints f ON f.id = j.footprint_id JOIN job_parts p ON p.id = f.part_id
WHERE j.month IN ({months}) AND j.is_current = 1 AND {visible}
    AND j.computed_at_s >= :month_end AND f.version > 1"""


def _in(months: Sequence[str], visible: Visible) -> tuple[dict[str, str], dict[str, Any]]:
    """The format fields and parameters of `month IN (...)` and the visibility condition."""
    names = {f"month{i}": month for i, month in enumerate(months)}
    fields = {"months": ", ".join(f":{name}" for name in names), "visible": visible[0]}
    return fields, {**names, **visible[1]}


def rolled_up(reader: Reader, months: Sequence[str]) -> set[str]:
    """Those of the months whose rollup is current: built, and no footprint month of theirs changed since."""
    fields, params = _in(months, EVERYTHING)
    return {row["month"] for row in reader.rows(rollups.FRESH.format(**fields), params)}


def group_sums(
    reader: Reader,
    by: str,
    months: Sequence[str],
    visible: Visible,
    bases: Mapping[str, Sequence[str]],
    rolled: Collection[str] = (),
) -> dict[Key, dict[str, Any]]:
    """Per (month, cluster, group key) with energy: `jobs`, each of SUMS, the newest `computed_s` and
    `received_s` of its footprints and parts, and per name in `bases` the CO2e of the footprint months
    whose `sources_json` is one of its texts (`month_sources` gives them). Months in `rolled`
    (`rolled_up`) are read from their rollups, the others from their footprint months."""
    cases, basis_params = _cases(bases)
    col = GROUP_COLUMNS[by]
    found: dict[Key, dict[str, Any]] = {}
    if live := [month for month in months if month not in rolled]:
        fields, params = _in(live, visible)
        sql = _GROUPS.format(col=col, bases=cases, **fields)
        found.update(_keyed(reader.rows(sql, {**params, **basis_params})))
    if done := [month for month in months if month in rolled]:
        fields, params = _in(done, visible)
        params["level"] = _level(by, visible)
        found.update(_keyed(reader.rows(_ROLLED_GROUPS.format(col=col, **fields), params)))
        sql = _ROLLED_BASES.format(col=col, bases=cases or ", 0 AS none", **fields)
        for key, row in _keyed(reader.rows(sql, {**params, **basis_params})).items():
            found[key].update({name: row[name] for name in bases})
    return found


def _level(by: str, visible: Visible) -> str:
    """The level of rollup rows the grouping reads for the viewer (rollups.level)."""
    return rollups.level(GROUP_COLUMNS[by].removeprefix("j."), visible == EVERYTHING)


def _cases(bases: Mapping[str, Sequence[str]]) -> tuple[str, dict[str, Any]]:
    """The select list's CO2e per basis (footprint months whose sources_json is one of its texts)."""
    cases, params = [], {}
    for b, (name, texts) in enumerate(bases.items()):
        names = {f"basis{b}_{i}": text for i, text in enumerate(texts)}
        listed = ", ".join(f":{n}" for n in names) or "NULL"
        cases.append(f", SUM(CASE WHEN j.sources_json IN ({listed}) THEN j.co2e_g ELSE 0 END) AS {name}")
        params.update(names)
    return "".join(cases), params


def _keyed(rows: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {(row["month"], row["cluster"], row["grp"]): row for row in rows}


# The distinct values of an indexed column, one index seek each (a loose index scan): DISTINCT read every
# one of ten million jobs, 3.8 s of a month's report (docs/benchmarks.md). NULL apart: MIN skips it.
_DISTINCT = """WITH RECURSIVE found (value) AS (
    SELECT MIN({col}) FROM jobs j
    UNION ALL
    SELECT (SELECT MIN({col}) FROM jobs j WHERE {col} > found.value) FROM found WHERE found.value IS NOT NULL)
SELECT value FROM found WHERE value IS NOT NULL"""
_HAS_NULL = "SELECT 1 AS one FROM jobs j WHERE {col} IS NULL LIMIT 1"
INDEXED = {"account": "j.account", "user": "j.user_name", "cluster": "j.cluster"}  # jobs' indexes lead with


def group_keys(reader: Reader, by: str, visible: Visible) -> list[tuple[str, Any]]:
    """Every (cluster, group key) any stored job the viewer may see has, energy in the months or not."""
    if visible == EVERYTHING and by in INDEXED:
        clusters = _distinct(reader, INDEXED["cluster"])
        if len(clusters) <= 1:  # one cluster: its groups are the column's values
            return [(cluster, key) for cluster in clusters for key in _distinct(reader, INDEXED[by])]
    sql = f"SELECT DISTINCT j.cluster, {GROUP_COLUMNS[by]} AS grp FROM jobs j WHERE {visible[0]}"  # noqa: S608
    return [(row["cluster"], row["grp"]) for row in reader.rows(sql, visible[1])]


def _distinct(reader: Reader, column: str) -> list[Any]:
    """The distinct values of an indexed column of jobs, NULL included."""
    values = [row["value"] for row in reader.rows(_DISTINCT.format(col=column), {})]
    return values + [None] * bool(reader.rows(_HAS_NULL.format(col=column), {}))


def gpu_hours_by_model(
    reader: Reader, by: str, months: Sequence[str], visible: Visible, rolled: Collection[str] = ()
) -> dict[Key, dict[str, float]]:
    """Per (month, cluster, group key), its GPU-hours per GPU model; months in `rolled` from rollups."""
    found: dict[Key, dict[str, float]] = {}
    for source, these in _split(months, rolled):
        fields, params = _in(these, visible)
        params["level"] = _level(by, visible)
        sql = _GPU_MODELS.format(col=GROUP_COLUMNS[by], source=source.format(**fields))
        for row in reader.rows(sql, params):
            models = found.setdefault((row["month"], row["cluster"], row["grp"]), {})
            for model, hours in json.loads(row["gpu_hours_json"]).items():
                models[model] = models.get(model, 0.0) + hours
    return found


def _split(months: Sequence[str], rolled: Collection[str]) -> list[tuple[str, list[str]]]:
    """The FROM ... WHERE text (with format fields) of the live months and of the rolled-up ones."""
    live = [month for month in months if month not in rolled]
    done = [month for month in months if month in rolled]
    rollup_source = _ROLLED.format(table="month_rollups", months="{months}", visible="{visible}")
    return [(text, these) for text, these in ((_CURRENT, live), (rollup_source, done)) if these]


def top(
    reader: Reader,
    by: str,
    months: Sequence[str],
    visible: Visible,
    items: str,
    limit: int,
    rolled: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The `limit` largest jobs or users (`items`, a key of TOP_ITEMS) by CO2e per month, cluster and
    group: month, cluster, grp, item, co2e_g, co2e_low_g, co2e_high_g, facility_energy_j, place. Months
    in `rolled` are read from their rollups where they hold the answer: a viewer of every job, at most
    rollups.TOP_KEPT (the top of what a viewer may see of a group is not the group's top)."""
    col = GROUP_COLUMNS[by]
    from_rollups = visible == EVERYTHING and limit <= rollups.TOP_KEPT
    done = [month for month in months if month in rolled] if from_rollups else []
    found = []
    if live := [month for month in months if month not in done]:
        fields, params = _in(live, visible)
        sql = rollups.TOP_RANKED.format(col=col, item=TOP_ITEMS[items], **fields)
        found += reader.rows(sql, {**params, "limit": limit})
    if done:
        fields, params = _in(done, visible)
        params.update(key=col.removeprefix("j."), items=items, limit=limit)
        found += reader.rows(rollups.TOP_READ.format(**fields), params)
    return found


def month_sources(
    reader: Reader, months: Sequence[str], rolled: Collection[str] = ()
) -> set[tuple[str | None, str]]:
    """The (zone, sources_json) pairs of the months' current footprints: the grid zones and the
    intensity sources they used, each footprint month's set of sources as stored."""
    found: set[tuple[str | None, str]] = set()
    for sql, these in (
        (_SOURCES, [m for m in months if m not in rolled]),
        (_ROLLED_SOURCES, [m for m in months if m in rolled]),
    ):
        if these:
            fields, params = _in(these, EVERYTHING)
            found.update(
                (row["zone"], row["sources_json"]) for row in reader.rows(sql.format(**fields), params)
            )
    return found


def source_factors(
    reader: Reader, zones: Sequence[str], start_s: float, end_s: float
) -> set[tuple[str, str]]:
    """The (source, scope) pairs of the zones' stored intensity series over [start_s, end_s): which
    emission factor, lifecycle or direct, each series source gave."""
    if not zones:
        return set()
    names = {f"zone{i}": zone for i, zone in enumerate(zones)}
    sql = _FACTORS.format(zones=", ".join(f":{n}" for n in names))
    found = reader.rows(sql, {**names, "start_s": start_s, "end_s": end_s})
    return {(row["source"], row["scope"]) for row in found}


def clusters_between(reader: Reader, start_s: float, end_s: float, visible: Visible) -> set[str]:
    """The clusters with a stored job the viewer may see running at some time in [start_s, end_s)."""
    params = {"month_start": start_s, "month_end": end_s, **visible[1]}
    return {row["cluster"] for row in reader.rows(_CLUSTERS.format(visible=visible[0]), params)}


def recomputed_after(
    reader: Reader, months: Sequence[str], first_end_s: float, visible: Visible
) -> list[dict[str, Any]]:
    """The months' current footprints recomputed (version > 1) at or after `first_end_s`, the end of the
    first month (the caller keeps those recomputed after their own month closed): month, cluster, job_id,
    node, version, computed_at_s. Recomputed footprints are few; one query serves a year."""
    fields, params = _in(months, visible)
    return reader.rows(_RECOMPUTED.format(**fields), {**params, "month_end": first_end_s})
