"""PostgreSQL functions through which compute nodes write, so their role needs no table privileges.

A node's writer role may EXECUTE these and SELECT intensity and schema_version, nothing more: it
cannot read other jobs' rows nor touch stored footprints (docs/postgresql.md). The functions run as
their owner (SECURITY DEFINER, search_path pinned) and are built from the very statements the SQLite
backend runs in Python, with each `:name` placeholder bound to a PL/pgSQL variable's field, so both
backends store a part the same way: exactly once, with its timeline and first footprint, in one
transaction.
"""

from __future__ import annotations

from slurm_plugin import runs
from slurm_plugin.storage import schema
from slurm_plugin.storage.backend import Backend
from slurm_plugin.storage.dialect import bind_variables

ADD_PART = "jobcarbon_add_part"
UPSERT_RUNNING = "jobcarbon_upsert_running"
PART_DIGEST = "jobcarbon_part_digest"
ADD_NODE_INTERVALS = "jobcarbon_add_node_intervals"
# The functions' SQL calls, in the shared placeholder style; footprint and months may be NULL. Parts go
# as arrays, a batch in one statement: one round trip and one transaction for them all, the function
# called for each part in the arrays' order (the caller's lock order).
CALL_ADD_PARTS = f"""
SELECT {ADD_PART}(CAST(p.job AS jsonb), CAST(p.part AS jsonb), p.record_zlib, p.intervals, p.columns_f64,
    CAST(p.footprint AS jsonb), CAST(p.months AS jsonb))
FROM unnest(CAST(:job AS text[]), CAST(:part AS text[]), CAST(:record_zlib AS bytea[]),
    CAST(:intervals AS bigint[]), CAST(:columns_f64 AS bytea[]), CAST(:footprint AS text[]),
    CAST(:months AS text[])) WITH ORDINALITY AS p (job, part, record_zlib, intervals, columns_f64, footprint,
    months, n)
ORDER BY p.n"""  # noqa: S608 - built from this module's constant
CALL_UPSERT_RUNNING = f"SELECT {UPSERT_RUNNING}(CAST(:snapshot AS jsonb), :record_zlib)"
# A stored part's content digest by its key (a digest, never the record: the writer reads no part).
CALL_PART_DIGEST = f"SELECT {PART_DIGEST}(CAST(:key AS jsonb))"
# A node record's ledger intervals (version 13): per interval, null where it was stored now, else the stored
# interval's content digest (a redelivery or a conflict; the writer reads no other column).
CALL_ADD_NODE_INTERVALS = f"SELECT {ADD_NODE_INTERVALS}(CAST(:rows AS jsonb))"
SIGNATURES = (
    f"{ADD_PART}(jsonb, jsonb, bytea, bigint, bytea, jsonb, jsonb)",
    f"{UPSERT_RUNNING}(jsonb, bytea)",
    f"{PART_DIGEST}(jsonb)",
    f"{ADD_NODE_INTERVALS}(jsonb)",
)

# The roles granted the first writer function, quoted (regrole's text form), the owner left out.
_WRITERS = """SELECT DISTINCT a.grantee::regrole::text
FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
WHERE p.oid = '{first}'::regprocedure AND a.privilege_type = 'EXECUTE'
  AND a.grantee NOT IN (0, p.proowner)"""

_KEY = {
    "cluster": "new_job",
    "job_id": "new_job",
    "restart_count": "new_job",
    "uid": "new_job",
    "*": "new_part",
}
# A part's key as a lock, held to the end of the transaction: a running snapshot and the finished record
# of the same part are written one after the other, so a snapshot never outlives its record (SQLite's
# single writer gives that for free).
_PART_LOCK = (
    "pg_catalog.hashtextextended({job}.cluster || '/' || {job}.job_id || '/' || {job}.restart_count"
    " || '/' || {job}.uid || '/' || {node}.run || '/' || {node}.node, 0)"
)
# A `seen:` part's job (its id, restart and user) as a lock, taken before the part's: two nodes' parts
# of one job stored at once would otherwise each find no job to join and insert one each. Parts are
# stored in key order (record_rows.record_order), so these locks too are always taken in one order.
_SEEN_JOB_LOCK = (
    "pg_catalog.hashtextextended('seen/' || new_job.cluster || '/' || new_job.job_id || '/'"
    " || new_job.restart_count || '/' || new_job.uid, 0)"
)
_SEEN_JOB = {"node": "new_part", "*": "new_job"}

_ADD_PART_BODY = f"""
DECLARE
    new_job jobs := pg_catalog.jsonb_populate_record(NULL::jobs, job_fields);
    new_part job_parts := pg_catalog.jsonb_populate_record(NULL::job_parts, part_fields);
    new_timeline timeline;
    new_footprint footprints := pg_catalog.jsonb_populate_record(NULL::footprints, footprint_fields);
    new_month footprint_months;
BEGIN
    IF pg_catalog.starts_with(new_job.run, '{runs.SEEN}') THEN
        PERFORM pg_catalog.pg_advisory_xact_lock({_SEEN_JOB_LOCK});
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock({_PART_LOCK.format(job="new_job", node="new_part")});
    IF EXISTS ({bind_variables(schema.FIND_PART, _KEY)}) THEN
        RETURN NULL;
    END IF;
    {bind_variables(schema.FIND_JOB, {"*": "new_job"})} INTO new_part.job;
    IF new_part.job IS NULL AND pg_catalog.starts_with(new_job.run, '{runs.SEEN}') THEN
        {bind_variables(schema.FIND_SEEN_JOB, _SEEN_JOB)} INTO new_part.job;
    END IF;
    IF new_part.job IS NULL THEN
        {bind_variables(schema.INSERT_JOB, {"*": "new_job"})} INTO new_part.job;
    END IF;
    IF new_part.job IS NULL THEN  -- inserted meanwhile by another part's transaction
        {bind_variables(schema.FIND_JOB, {"*": "new_job"})} INTO new_part.job;
    END IF;
    {bind_variables(schema.WIDEN_JOB, {"job": "new_part", "*": "new_job"})};
    {bind_variables(schema.DELETE_RUNNING, _KEY)};
    new_part.record_zlib := part_record_zlib;
    {bind_variables(schema.INSERT_PART, {"*": "new_part"})} INTO new_part.id;
    IF new_part.id IS NULL THEN
        RETURN NULL;  -- stored by a concurrent delivery of the same record
    END IF;
    new_timeline := ROW(new_part.id, timeline_intervals, timeline_f64);
    {bind_variables(schema.INSERT_TIMELINE, {"*": "new_timeline"})};
    IF footprint_fields IS NOT NULL THEN
        new_footprint.part_id := new_part.id;
        new_footprint.version := 1;
        {bind_variables(schema.INSERT_FOOTPRINT, {"*": "new_footprint"})} INTO new_footprint.id;
        FOR new_month IN SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::footprint_months, month_rows)
        LOOP
            new_month.footprint_id := new_footprint.id;
            {bind_variables(schema.INSERT_FOOTPRINT_MONTH, {"*": "new_month"})};
        END LOOP;
    END IF;
    RETURN new_part.id;
END"""  # noqa: S608 - built from this package's constant statements

_UPSERT_RUNNING_BODY = f"""
DECLARE
    new_run running_parts := pg_catalog.jsonb_populate_record(NULL::running_parts, run_fields);
BEGIN
    new_run.record_zlib := run_record_zlib;
    PERFORM pg_catalog.pg_advisory_xact_lock({_PART_LOCK.format(job="new_run", node="new_run")});
    IF EXISTS ({bind_variables(schema.FIND_PART, {"*": "new_run"})}) THEN
        RETURN false;
    END IF;
    {bind_variables(schema.UPSERT_RUNNING, {"*": "new_run"})};
    RETURN true;
END"""

_PART_DIGEST_BODY = f"""
DECLARE
    new_job jobs := pg_catalog.jsonb_populate_record(NULL::jobs, key_fields);
    new_part job_parts := pg_catalog.jsonb_populate_record(NULL::job_parts, key_fields);
BEGIN
    RETURN ({bind_variables(schema.PART_DIGEST, _KEY)});
END"""

_ADD_NODE_INTERVALS_BODY = f"""
DECLARE
    new_interval node_intervals;
    inserted double precision;
    stored text;
    answers text[] := ARRAY[]::text[];
BEGIN
    FOR new_interval IN SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::node_intervals, interval_rows)
    LOOP
        inserted := NULL;
        stored := NULL;
        {bind_variables(schema.INSERT_NODE_INTERVAL, {"*": "new_interval"})} INTO inserted;
        IF inserted IS NULL THEN
            {bind_variables(schema.NODE_INTERVAL_DIGEST, {"*": "new_interval"})} INTO stored;
        END IF;
        answers := pg_catalog.array_append(answers, stored);
    END LOOP;
    RETURN answers;
END"""  # noqa: S608 - built from this package's constant statements

_FUNCTIONS = (
    (
        f"{ADD_PART}(job_fields jsonb, part_fields jsonb, part_record_zlib bytea, timeline_intervals bigint, "
        "timeline_f64 bytea, footprint_fields jsonb, month_rows jsonb) RETURNS bigint",
        _ADD_PART_BODY,
    ),
    (f"{UPSERT_RUNNING}(run_fields jsonb, run_record_zlib bytea) RETURNS boolean", _UPSERT_RUNNING_BODY),
    (f"{PART_DIGEST}(key_fields jsonb) RETURNS text", _PART_DIGEST_BODY),
    (f"{ADD_NODE_INTERVALS}(interval_rows jsonb) RETURNS text[]", _ADD_NODE_INTERVALS_BODY),
)


# A function over a table a later migration adds is created from that migration on (PL/pgSQL resolves its
# row types when created): an upgrade runs the earlier migrations' `create` before the table exists.
_NEEDS_TABLE = {ADD_NODE_INTERVALS: "node_intervals"}


def create(db: Backend) -> None:
    """(Re)create the functions in the current schema, callable by no one until granted.

    They run as their owner, so nothing they call may be found where another role can create objects:
    pg_catalog first and functions qualified with it, then only this schema, pg_temp last."""
    where = db.execute("SELECT quote_ident(current_schema())").fetchone()[0]
    present = [
        (signature, head, body)
        for signature, (head, body) in zip(SIGNATURES, _FUNCTIONS, strict=True)
        if db.has_table(_NEEDS_TABLE.get(signature.partition("(")[0], "jobs"))
    ]
    for _, head, body in present:
        db.ddl(
            f"CREATE OR REPLACE FUNCTION {head} LANGUAGE plpgsql SECURITY DEFINER "
            f"SET search_path = pg_catalog, {where}, pg_temp "
            f"AS $body$\n#variable_conflict use_column{body}\n$body$"
        )
    for signature, _, _ in present:
        db.ddl(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    # A writer granted before an upgrade added a function gets it too: nodes keep delivering.
    for (writer,) in db.execute(_WRITERS.format(first=f"{where}.{SIGNATURES[0]}")).fetchall():
        for signature, _, _ in present:
            db.ddl(f"GRANT EXECUTE ON FUNCTION {signature} TO {writer}")
