-- Issue 14: attempt history, listing newest first with filters, and the console's
-- summaries (failure groups, throughput).

-- The class of the last error (e.g. RuntimeError), set when an attempt fails: failure
-- groups are (type, error_class).
ALTER TABLE jobs ADD COLUMN error_class text;
-- Jobs that failed before this version: the class read off `Type: message`, where the
-- text starts with one (as workstream.jobs.attempts.error_class_of reads it).
-- (A text without a colon is a class alone: `KeyboardInterrupt`.)
UPDATE jobs SET error_class = substring(last_error from '^([A-Za-z_][A-Za-z0-9_.]{0,199})(:|$)')
WHERE status = 'failed' AND last_error IS NOT NULL;

-- Every attempt of every job, written in the same transaction as the outcome it records.
-- `number` is the job's attempt count when it ran (a released attempt is not counted, so
-- its number comes again). Deleted with its job (Store.delete_attempts).
CREATE TABLE job_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      text             NOT NULL,
    number      integer          NOT NULL,
    outcome     text             NOT NULL,
    started_at  double precision,
    finished_at double precision NOT NULL,
    node        text,
    worker      text,
    pid         integer,
    error       text,
    error_class text,
    traceback   text,
    duration    double precision
);
CREATE INDEX job_attempts_by_job ON job_attempts (job_id, number);

-- Listing orders by (created_at, seq), newest or oldest first (a backward index scan):
-- with no filter, by status or by type (each with a time range), a page is an index range
-- read in order.
DROP INDEX jobs_by_status_seq;
DROP INDEX jobs_by_type_seq;
CREATE INDEX jobs_by_created ON jobs (created_at, seq);
CREATE INDEX jobs_by_status_created ON jobs (status, created_at, seq);
CREATE INDEX jobs_by_type_created ON jobs (type, created_at, seq);

-- Id prefixes: a range of the id in byte order, whatever the database's collation.
CREATE INDEX jobs_id_prefix ON jobs (id COLLATE "C");

-- Failure groups: jobs failed for good, by type and error class, with the latest time.
CREATE INDEX jobs_failed_for_good ON jobs (type, error_class, finished_at)
    WHERE status = 'failed' AND run_at IS NULL;

-- Throughput: jobs finished per minute (completed, failed for good, cancelled).
CREATE INDEX jobs_by_finished ON jobs (finished_at, status) WHERE finished_at IS NOT NULL;

-- Text in the error: a trigram index (pg_trgm ships with PostgreSQL and is a trusted
-- extension: a database owner may create it) for ILIKE '%text%'.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX jobs_last_error_trgm ON jobs USING gin (last_error gin_trgm_ops)
    WHERE last_error IS NOT NULL;
