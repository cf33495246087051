"""All of jobcarbon's SQL: the tables (migrations.py numbers them) and the statements the store runs.

Times are UTC epoch seconds in DOUBLE PRECISION columns named `*_s`: they sort and compare as numbers,
match the bounds in packed timelines, and mean the same in SQLite and PostgreSQL. The text keeps to what
both accept (ON CONFLICT, RETURNING, CASE rather than MIN/MAX of two values); `dialect` translates
SQLite's placeholders and types for PostgreSQL. Each backend begins its own transactions.
"""

from __future__ import annotations

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at_s DOUBLE PRECISION NOT NULL
)"""

# "user", "end" and "current" are reserved words somewhere: hence user_name, end_s, is_current.
JOBS = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    cluster TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    restart_count INTEGER NOT NULL,
    user_name TEXT NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    account TEXT,
    partition TEXT,
    start_s DOUBLE PRECISION NOT NULL,
    end_s DOUBLE PRECISION NOT NULL,
    UNIQUE (cluster, job_id, restart_count)
)"""

# What Slurm says about a job (the record's `slurm` block, docs/record.md), added in version 10; null for
# jobs stored before, or whose node did not hear from Slurm. The job's first stored part sets them.
JOB_FACTS = (
    ("job_name", "TEXT"),
    ("slurm_state", "TEXT"),
    ("exit_code", "INTEGER"),
    ("exit_signal", "INTEGER"),
    ("time_limit_s", "DOUBLE PRECISION"),
    ("req_cpus", "INTEGER"),
    ("req_mem_mb", "DOUBLE PRECISION"),
    ("array_job_id", "INTEGER"),
    ("array_task_id", "INTEGER"),
    ("het_job_id", "INTEGER"),
    ("het_job_offset", "INTEGER"),
    ("qos", "TEXT"),
    ("submit_s", "DOUBLE PRECISION"),
)

# A part's use of what it held (docs/attribution.md, "Waste"), added in version 12 so that `jobcarbon jobs`
# and the monthly report sum them without reading records: the idle GPUs' energy, the waste (idle GPUs +
# idle cores), and the GPUs' mean utilisation over their sampled seconds. Null for parts stored before,
# and (utilisation) for parts without GPU readings.
PART_USE = (
    ("idle_gpu_j", "DOUBLE PRECISION CHECK (idle_gpu_j >= 0)"),
    ("waste_j", "DOUBLE PRECISION CHECK (waste_j >= 0)"),
    ("gpu_util_pct", "DOUBLE PRECISION CHECK (gpu_util_pct BETWEEN 0 AND 100)"),
    ("gpu_sampled_s", "DOUBLE PRECISION CHECK (gpu_sampled_s >= 0)"),
)

# Version 11: a job is one run of a Slurm job id (slurm_plugin/runs.py); Slurm reuses ids, so the run and
# the user are in the key, and a row of a release before is the legacy run ''. The table is rebuilt from
# JOBS with JOB_FACTS and RUN_COLUMN added (migrations.py), so JOBS stays as version 1 created it.
RUN_COLUMN = ("run", "TEXT NOT NULL DEFAULT ''")
JOB_KEY_BEFORE_RUNS = "UNIQUE (cluster, job_id, restart_count)"
JOB_KEY = "cluster, job_id, restart_count, run, uid"


def jobs_table(name: str) -> str:
    """The jobs table of version 11 under `name`: version 1's columns, JOB_FACTS, the run, its key."""
    added = "".join(f"{column} {kind},\n    " for column, kind in (*JOB_FACTS, RUN_COLUMN))
    table = JOBS.replace("CREATE TABLE jobs", f"CREATE TABLE {name}")
    return table.replace(JOB_KEY_BEFORE_RUNS, f"{added}UNIQUE ({JOB_KEY})")


# A part's key is (cluster, job_id, restart_count, uid, node, run) through its job row: UNIQUE (job, node).
# Its run is its own record's (version 11): a job joined from `seen:` parts has one per node.
JOB_PARTS = """
CREATE TABLE job_parts (
    id INTEGER PRIMARY KEY,
    job INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    start_s DOUBLE PRECISION NOT NULL,
    end_s DOUBLE PRECISION NOT NULL,
    elapsed_s DOUBLE PRECISION NOT NULL CHECK (elapsed_s >= 0),
    cpu_count INTEGER NOT NULL CHECK (cpu_count >= 0),
    cpu_list TEXT NOT NULL,
    gpus_json TEXT NOT NULL,
    cpu_j DOUBLE PRECISION CHECK (cpu_j >= 0),
    cpu_method TEXT,
    dram_j DOUBLE PRECISION CHECK (dram_j >= 0),
    dram_method TEXT,
    gpu_j DOUBLE PRECISION CHECK (gpu_j >= 0),
    gpu_method TEXT,
    total_j DOUBLE PRECISION NOT NULL CHECK (total_j >= 0),
    coverage_fraction DOUBLE PRECISION NOT NULL CHECK (coverage_fraction BETWEEN 0 AND 1),
    status TEXT NOT NULL CHECK (status IN ('complete', 'partial')),
    partial_reasons_json TEXT NOT NULL,
    notes_json TEXT NOT NULL,
    software_version TEXT NOT NULL,
    record_zlib BLOB NOT NULL,
    received_at_s DOUBLE PRECISION NOT NULL,
    UNIQUE (job, node)
)"""

# Version 1's timeline, a row per interval; replaced by TIMELINE_PACKED in version 3.
# Absolute interval bounds: a record's rows are seconds from its timeline origin.
TIMELINE = """
CREATE TABLE timeline (
    id INTEGER PRIMARY KEY,
    part_id INTEGER NOT NULL REFERENCES job_parts (id) ON DELETE CASCADE,
    t0_s DOUBLE PRECISION NOT NULL,
    t1_s DOUBLE PRECISION NOT NULL,
    cpu_j DOUBLE PRECISION,
    dram_j DOUBLE PRECISION,
    gpu_j DOUBLE PRECISION
)"""

# One row per part: its intervals packed as packed_timeline describes (five float64 columns, NaN for
# null, absolute bounds). A row per interval cost ingest 1.4 ms under the write lock for an hour at 10 s,
# and a week (60,480 rows) took 60-100 ms to read back; monthly reports decode the blob in Python.
TIMELINE_PACKED = """
CREATE TABLE timeline (
    part_id INTEGER PRIMARY KEY REFERENCES job_parts (id) ON DELETE CASCADE,
    intervals INTEGER NOT NULL CHECK (intervals >= 0),
    columns_f64 BLOB NOT NULL
)"""


INTENSITY = """
CREATE TABLE intensity (
    zone TEXT NOT NULL,
    source TEXT NOT NULL,
    start_s DOUBLE PRECISION NOT NULL,
    end_s DOUBLE PRECISION NOT NULL,
    g_per_kwh DOUBLE PRECISION NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('lifecycle', 'direct')),
    estimated INTEGER NOT NULL CHECK (estimated IN (0, 1)),
    forecast INTEGER NOT NULL CHECK (forecast IN (0, 1)),
    fetched_at_s DOUBLE PRECISION,
    PRIMARY KEY (zone, source, start_s)
)"""

# A footprint's fields that are also columns, to query without parsing its JSON.
FOOTPRINT_HEADLINE = (
    "it_energy_j",
    "facility_energy_j",
    "co2e_g",
    "effective_g_per_kwh",
    "rung",
    "measured_intensity_fraction",
)

# Each recompute adds a version; exactly one per part is current, older ones stay for provenance.
FOOTPRINTS = """
CREATE TABLE footprints (
    id INTEGER PRIMARY KEY,
    part_id INTEGER NOT NULL REFERENCES job_parts (id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    is_current INTEGER NOT NULL CHECK (is_current IN (0, 1)),
    computed_at_s DOUBLE PRECISION NOT NULL,
    it_energy_j DOUBLE PRECISION,
    facility_energy_j DOUBLE PRECISION,
    co2e_g DOUBLE PRECISION,
    effective_g_per_kwh DOUBLE PRECISION,
    rung TEXT,
    measured_intensity_fraction DOUBLE PRECISION,
    fields_json TEXT NOT NULL,
    UNIQUE (part_id, version)
)"""

RUNNING_PARTS = """
CREATE TABLE running_parts (
    cluster TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    restart_count INTEGER NOT NULL,
    node TEXT NOT NULL,
    uid INTEGER NOT NULL,
    account TEXT,
    updated_s DOUBLE PRECISION NOT NULL,
    record_zlib BLOB NOT NULL,
    footprint_json TEXT,
    PRIMARY KEY (cluster, job_id, restart_count, node)
)"""

# A footprint's figures per calendar month of the site's time zone (accounting.timezone), for monthly
# reports: written with the footprint, so a report is one GROUP BY and never decodes a timeline.
FOOTPRINT_MONTHS = """
CREATE TABLE footprint_months (
    footprint_id INTEGER NOT NULL REFERENCES footprints (id) ON DELETE CASCADE,
    month TEXT NOT NULL,
    it_energy_j DOUBLE PRECISION NOT NULL,
    facility_energy_j DOUBLE PRECISION NOT NULL,
    co2e_g DOUBLE PRECISION NOT NULL,
    cpu_j DOUBLE PRECISION NOT NULL,
    dram_j DOUBLE PRECISION NOT NULL,
    gpu_j DOUBLE PRECISION NOT NULL,
    estimated_j DOUBLE PRECISION NOT NULL,
    series_co2e_g DOUBLE PRECISION NOT NULL,
    core_hours DOUBLE PRECISION NOT NULL,
    node_hours DOUBLE PRECISION NOT NULL,
    gpu_hours DOUBLE PRECISION NOT NULL,
    gpu_hours_json TEXT NOT NULL,
    zone TEXT,
    sources_json TEXT NOT NULL,
    PRIMARY KEY (footprint_id, month)
)"""

# Version 14: a footprint month's joules per method (estimated_j was there) and the low and high ends of
# its energy and CO2e (slurm_plugin/uncertainty.py), so a report's bands are sums like its figures.
FOOTPRINT_MONTH_BANDS = (
    "measured_j",
    "integrated_j",
    "apportioned_j",
    "it_energy_low_j",
    "it_energy_high_j",
    "facility_energy_low_j",
    "facility_energy_high_j",
    "co2e_low_g",
    "co2e_high_g",
)
_BAND_NAMES = ", ".join(FOOTPRINT_MONTH_BANDS)
# What a report sums of footprint months (and a rollup row holds): the figures, hours and bands, and the
# waste (idle GPUs + idle cores, docs/attribution.md), which falls in a month by the month's share of the
# part's IT energy, its CO2e that share of the month's; months without a waste figure add nothing.
FOOTPRINT_MONTH_SUMS = (
    "core_hours",
    "node_hours",
    "gpu_hours",
    "cpu_j",
    "dram_j",
    "gpu_j",
    "it_energy_j",
    "facility_energy_j",
    "co2e_g",
    "estimated_j",
    "series_co2e_g",
    *FOOTPRINT_MONTH_BANDS,
)
FOOTPRINT_MONTH_WASTE = {"waste_j": "it_energy_j * waste_share", "waste_co2e_g": "co2e_g * waste_share"}
_BAND_VALUES = ", ".join(f":{name}" for name in FOOTPRINT_MONTH_BANDS)
# Version 14 too: the job's keys and the footprint's currency copied into each footprint month, so that a
# report (a month, a year of ten million jobs) reads this one table, never joining footprints, parts and
# jobs row by row (docs/benchmarks.md). Written from those rows as the month is stored; is_current follows
# the footprint's when a recompute retires it. (column, its source in FOOTPRINT_MONTH_KEYS_FROM, type)
FOOTPRINT_MONTH_KEYS = (
    ("is_current", "f.is_current", "INTEGER"),
    ("computed_at_s", "f.computed_at_s", "DOUBLE PRECISION"),
    ("job", "p.job", "INTEGER"),
    ("received_at_s", "p.received_at_s", "DOUBLE PRECISION"),
    ("cluster", "j.cluster", "TEXT"),
    ("job_id", "j.job_id", "INTEGER"),
    ("user_name", "j.user_name", "TEXT"),
    ("uid", "j.uid", "INTEGER"),
    ("gid", "j.gid", "INTEGER"),
    ("account", "j.account", "TEXT"),
    ("partition", "j.partition", "TEXT"),
    # the share of the part's IT energy it wasted (idle GPUs and cores, version 12): a month's waste is
    # that share of the month's energy and CO2e; null where the part has no waste figure
    ("waste_share", "CASE WHEN f.it_energy_j > 0 THEN p.waste_j / f.it_energy_j END", "DOUBLE PRECISION"),
)
FOOTPRINT_MONTH_KEYS_FROM = "footprints f JOIN job_parts p ON p.id = f.part_id JOIN jobs j ON j.id = p.job"
_KEY_NAMES = ", ".join(name for name, _, _ in FOOTPRINT_MONTH_KEYS)
_KEY_SOURCES = ", ".join(source for _, source, _ in FOOTPRINT_MONTH_KEYS)

# --- statements -------------------------------------------------------------------------------------

# The job as a scalar subquery, not a join: the writer function keeps one plan of its EXISTS check per
# session, and for a join planned while job_parts held a page or two PostgreSQL chose a sequential scan,
# which then read every part for each record stored. Since version 11 the jobs of one id, restart and user
# are a few (one per reuse of the id): found through the key's index, each one's part by a scalar
# subquery through UNIQUE (job, node) (an IN or a join again planned a sequential scan).
FIND_PART = """
SELECT id FROM (
    SELECT (SELECT p.id FROM job_parts p WHERE p.job = j.id AND p.node = :node AND p.run = :run) AS id
    FROM jobs j
    WHERE j.cluster = :cluster AND j.job_id = :job_id AND j.restart_count = :restart_count AND j.uid = :uid
) found WHERE id IS NOT NULL"""

# A stored part's content digest (record.digest), to tell a redelivery from a conflicting record with the
# same key; the record itself is read only where the caller may read parts (not PostgreSQL's writer).
PART_DIGEST = f"SELECT content_sha256 FROM job_parts WHERE id = ({FIND_PART})"  # noqa: S608 - constants
PART_RECORD = f"SELECT record_zlib FROM job_parts WHERE id = ({FIND_PART})"  # noqa: S608 - constants
# Version 9: each part's content digest, filled for the parts stored before (migrations.py).
PART_DIGEST_COLUMN = "ALTER TABLE job_parts ADD COLUMN content_sha256 TEXT"
PARTS_TO_DIGEST = "SELECT id, record_zlib FROM job_parts WHERE id > :after ORDER BY id LIMIT 1000"
SET_PART_DIGEST = "UPDATE job_parts SET content_sha256 = :content_sha256 WHERE id = :id"

# A job's row: found, or inserted by its first part, then widened where a part starts earlier or ends
# later. Found first, since an INSERT that meets the row waits for any transaction changing it; the row is
# locked (to the end of the transaction) only where it is widened, so the parts of a many-node job, whose
# epilogs end together, are not stored one at a time.
FIND_JOB = """
SELECT id FROM jobs WHERE cluster = :cluster AND job_id = :job_id AND restart_count = :restart_count
    AND run = :run AND uid = :uid"""

# A `seen:` part (runs.py: Slurm gave no run every node shares) joins the job of the same id, restart and
# user whose span overlaps its own and that has no part from its node yet; the newest such job first.
FIND_SEEN_JOB = """
SELECT j.id FROM jobs j
WHERE j.cluster = :cluster AND j.job_id = :job_id AND j.restart_count = :restart_count AND j.uid = :uid
    AND substr(j.run, 1, 5) = 'seen:' AND j.start_s <= :end_s AND j.end_s >= :start_s
    AND NOT EXISTS (SELECT 1 FROM job_parts p WHERE p.job = j.id AND p.node = :node)
ORDER BY j.id DESC LIMIT 1"""

_FACT_NAMES = ", ".join(name for name, _ in JOB_FACTS)
_FACT_VALUES = ", ".join(f":{name}" for name, _ in JOB_FACTS)
INSERT_JOB = f"""
INSERT INTO jobs (cluster, job_id, restart_count, run, user_name, uid, gid, account, partition, start_s,
    end_s, {_FACT_NAMES})
VALUES (:cluster, :job_id, :restart_count, :run, :user_name, :uid, :gid, :account, :partition, :start_s,
    :end_s, {_FACT_VALUES})
ON CONFLICT ({JOB_KEY}) DO NOTHING
RETURNING id"""  # noqa: S608 - this module's constant column names

WIDEN_JOB = """
UPDATE jobs SET
    start_s = CASE WHEN :start_s < start_s THEN :start_s ELSE start_s END,
    end_s = CASE WHEN :end_s > end_s THEN :end_s ELSE end_s END
WHERE id = :job AND (start_s > :start_s OR end_s < :end_s)"""

_USE_NAMES = ", ".join(name for name, _ in PART_USE)
_USE_VALUES = ", ".join(f":{name}" for name, _ in PART_USE)
INSERT_PART = f"""
INSERT INTO job_parts (job, node, run, start_s, end_s, elapsed_s, cpu_count, cpu_list, gpus_json,
    cpu_j, cpu_method, dram_j, dram_method, gpu_j, gpu_method, total_j, coverage_fraction, status,
    partial_reasons_json, notes_json, software_version, record_zlib, received_at_s, content_sha256,
    {_USE_NAMES})
VALUES (:job, :node, :run, :start_s, :end_s, :elapsed_s, :cpu_count, :cpu_list, :gpus_json,
    :cpu_j, :cpu_method, :dram_j, :dram_method, :gpu_j, :gpu_method, :total_j, :coverage_fraction, :status,
    :partial_reasons_json, :notes_json, :software_version, :record_zlib, :received_at_s, :content_sha256,
    {_USE_VALUES})
ON CONFLICT (job, node) DO NOTHING
RETURNING id"""  # noqa: S608 - this module's constant column names

SELECT_PART = """
SELECT p.id, j.cluster, j.job_id, j.restart_count, p.run, p.node, j.user_name AS user, j.uid, j.gid,
    j.account, j.partition, p.start_s, p.end_s, p.elapsed_s, p.cpu_j, p.dram_j, p.gpu_j, p.total_j,
    p.coverage_fraction, p.status, p.cpu_count, p.gpus_json, p.cpu_method, p.dram_method, p.gpu_method
FROM job_parts p JOIN jobs j ON j.id = p.job WHERE p.id = :id"""

SELECT_PARTS = "SELECT id FROM job_parts WHERE end_s >= :since ORDER BY id"

SELECT_RECORD = "SELECT record_zlib FROM job_parts WHERE id = :id"

INSERT_TIMELINE = (
    "INSERT INTO timeline (part_id, intervals, columns_f64) VALUES (:part_id, :intervals, :columns_f64)"
)

SELECT_TIMELINE = "SELECT columns_f64 FROM timeline WHERE part_id = :part_id"

UPSERT_INTENSITY = """
INSERT INTO intensity (zone, source, start_s, end_s, g_per_kwh, scope, estimated, forecast, fetched_at_s)
VALUES (:zone, :source, :start_s, :end_s, :g_per_kwh, :scope, :estimated, :forecast, :fetched_at_s)
ON CONFLICT (zone, source, start_s) DO UPDATE SET end_s = excluded.end_s, g_per_kwh = excluded.g_per_kwh,
    scope = excluded.scope, estimated = excluded.estimated, forecast = excluded.forecast,
    fetched_at_s = excluded.fetched_at_s"""

SELECT_INTENSITY = """
SELECT zone, source, start_s, end_s, g_per_kwh, scope, estimated, forecast, fetched_at_s FROM intensity
WHERE zone = :zone AND start_s < :end AND end_s > :start ORDER BY start_s, source"""

NEXT_VERSION = "SELECT COALESCE(MAX(version), 0) + 1 FROM footprints WHERE part_id = :part_id"

INSERT_FOOTPRINT = """
INSERT INTO footprints (part_id, version, is_current, computed_at_s, it_energy_j, facility_energy_j, co2e_g,
    effective_g_per_kwh, rung, measured_intensity_fraction, fields_json)
VALUES (:part_id, :version, 1, :computed_at_s, :it_energy_j, :facility_energy_j, :co2e_g,
    :effective_g_per_kwh, :rung, :measured_intensity_fraction, :fields_json)
RETURNING id"""

RETIRE_FOOTPRINTS = "UPDATE footprints SET is_current = 0 WHERE part_id = :part_id AND is_current = 1"
RETIRE_FOOTPRINT_MONTHS = """
UPDATE footprint_months SET is_current = 0
WHERE footprint_id IN (SELECT id FROM footprints WHERE part_id = :part_id AND is_current = 1)"""

_FOOTPRINT_COLUMNS = "SELECT id, part_id, version, is_current, computed_at_s, fields_json FROM footprints"
SELECT_FOOTPRINTS = f"{_FOOTPRINT_COLUMNS} WHERE part_id = :part_id ORDER BY version"
SELECT_CURRENT_FOOTPRINT = f"{_FOOTPRINT_COLUMNS} WHERE part_id = :part_id AND is_current = 1"


UPSERT_RUNNING = """
INSERT INTO running_parts (cluster, job_id, restart_count, node, run, uid, account, updated_s, record_zlib,
    footprint_json)
VALUES (:cluster, :job_id, :restart_count, :node, :run, :uid, :account, :updated_s, :record_zlib,
    :footprint_json)
ON CONFLICT (cluster, job_id, restart_count, node) DO UPDATE SET
    run = excluded.run, uid = excluded.uid, account = excluded.account, updated_s = excluded.updated_s,
    record_zlib = excluded.record_zlib, footprint_json = excluded.footprint_json
WHERE excluded.updated_s > running_parts.updated_s"""

DELETE_RUNNING = """
DELETE FROM running_parts
WHERE cluster = :cluster AND job_id = :job_id AND restart_count = :restart_count AND node = :node
    AND run = :run"""

INSERT_FOOTPRINT_MONTH = f"""
INSERT INTO footprint_months (footprint_id, month, it_energy_j, facility_energy_j, co2e_g, cpu_j, dram_j,
    gpu_j, estimated_j, series_co2e_g, core_hours, node_hours, gpu_hours, gpu_hours_json, zone, sources_json,
    {_BAND_NAMES}, {_KEY_NAMES})
SELECT :footprint_id, :month, :it_energy_j, :facility_energy_j, :co2e_g, :cpu_j, :dram_j, :gpu_j,
    :estimated_j, :series_co2e_g, :core_hours, :node_hours, :gpu_hours, :gpu_hours_json, :zone,
    :sources_json, {_BAND_VALUES}, {_KEY_SOURCES}
FROM {FOOTPRINT_MONTH_KEYS_FROM} WHERE f.id = :footprint_id"""  # noqa: S608 - this module's constants

DELETE_FOOTPRINT_MONTHS = "DELETE FROM footprint_months WHERE footprint_id = :footprint_id"

SELECT_FOOTPRINT_MONTHS = f"""
SELECT month, it_energy_j, facility_energy_j, co2e_g, cpu_j, dram_j, gpu_j, estimated_j, series_co2e_g,
    core_hours, node_hours, gpu_hours, gpu_hours_json, zone, sources_json, {_BAND_NAMES}
FROM footprint_months WHERE footprint_id = :footprint_id ORDER BY month"""  # noqa: S608 - constant names

# --- the node ledger (version 13) ---------------------------------------------------------------------

# Each node's measured energy per ledger interval, with what its jobs were given of it (docs/methodology.md,
# "The node ledger"): the remainder is measured - jobs per component. Keyed (cluster, node, t0_s) for
# exactly-once ingest; a redelivered interval with the same content_sha256 is a duplicate, with another a
# conflict. Measured columns are null where the node could not measure the component (its jobs' estimate
# then stands for the node); `job_shares_json` is [[job_id, restart_count, energy_j, core_s], ...].
NODE_INTERVALS = """
CREATE TABLE node_intervals (
    cluster TEXT NOT NULL,
    node TEXT NOT NULL,
    t0_s DOUBLE PRECISION NOT NULL,
    t1_s DOUBLE PRECISION NOT NULL,
    boot_id TEXT,
    ncpus INTEGER NOT NULL,
    cpu_j DOUBLE PRECISION,
    cpu_method TEXT,
    dram_j DOUBLE PRECISION,
    dram_method TEXT,
    gpu_j DOUBLE PRECISION,
    jobs_cpu_j DOUBLE PRECISION NOT NULL,
    jobs_dram_j DOUBLE PRECISION NOT NULL,
    jobs_gpu_j DOUBLE PRECISION NOT NULL,
    jobs_core_s DOUBLE PRECISION NOT NULL,
    unmeasured_s DOUBLE PRECISION NOT NULL,
    job_shares_json TEXT NOT NULL,
    notes_json TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    received_at_s DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (cluster, node, t0_s)
)"""

NODE_INTERVAL_COLUMNS = (
    "cluster, node, t0_s, t1_s, boot_id, ncpus, cpu_j, cpu_method, dram_j, dram_method, gpu_j, jobs_cpu_j, "
    "jobs_dram_j, jobs_gpu_j, jobs_core_s, unmeasured_s, job_shares_json, notes_json, content_sha256, "
    "received_at_s"
)
_NODE_INTERVAL_VALUES = ", ".join(f":{name.strip()}" for name in NODE_INTERVAL_COLUMNS.split(","))

# Inserted, or nothing where the interval is stored: RETURNING tells which.
INSERT_NODE_INTERVAL = f"""
INSERT INTO node_intervals ({NODE_INTERVAL_COLUMNS})
VALUES ({_NODE_INTERVAL_VALUES})
ON CONFLICT (cluster, node, t0_s) DO NOTHING
RETURNING t0_s"""  # noqa: S608 - this module's constant column names

NODE_INTERVAL_DIGEST = """
SELECT content_sha256 FROM node_intervals WHERE cluster = :cluster AND node = :node AND t0_s = :t0_s"""

# The intervals overlapping [start, end), for reports (a month) and `jobcarbon report --reconcile`.
SELECT_NODE_INTERVALS = f"""
SELECT {NODE_INTERVAL_COLUMNS} FROM node_intervals
WHERE t0_s < :end AND t1_s > :start ORDER BY cluster, node, t0_s"""  # noqa: S608 - constant column names
