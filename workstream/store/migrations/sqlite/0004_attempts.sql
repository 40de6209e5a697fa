-- Issue 14: attempt history, listing newest first with filters, and the console's
-- summaries (failure groups, throughput).

-- The class of the last error (e.g. RuntimeError), set when an attempt fails: failure
-- groups are (type, error_class).
ALTER TABLE jobs ADD COLUMN error_class TEXT;
-- Jobs that failed before this version: the class read off `Type: message`, where the
-- text starts with one (as workstream.jobs.attempts.error_class_of reads it).
-- (A text without a colon is a class alone: `KeyboardInterrupt`.)
UPDATE jobs SET error_class = name FROM (
    SELECT seq AS failed_seq, CASE WHEN instr(last_error, ':') > 0
        THEN substr(last_error, 1, instr(last_error, ':') - 1) ELSE last_error END AS name
    FROM jobs WHERE status = 'failed' AND last_error IS NOT NULL
) WHERE seq = failed_seq AND length(name) BETWEEN 1 AND 200
    AND substr(name, 1, 1) GLOB '[A-Za-z_]' AND name NOT GLOB '*[^A-Za-z0-9_.]*';

-- Every attempt of every job, written in the same transaction as the outcome it records.
-- `number` is the job's attempt count when it ran (a released attempt is not counted, so
-- its number comes again). Deleted with its job (Store.delete_attempts).
CREATE TABLE job_attempts (
    id          INTEGER PRIMARY KEY,
    job_id      TEXT    NOT NULL,
    number      INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    started_at  REAL,
    finished_at REAL    NOT NULL,
    node        TEXT,
    worker      TEXT,
    pid         INTEGER,
    error       TEXT,
    error_class TEXT,
    traceback   TEXT,
    duration    REAL
);
CREATE INDEX job_attempts_by_job ON job_attempts (job_id, number);

-- Listing orders by (created_at, seq), newest or oldest first; every index below ends in
-- the rowid (seq), so each one serves that order, and a filter by status or type (with a
-- time range) reads its index range in order.
DROP INDEX jobs_by_status_seq;
DROP INDEX jobs_by_type_seq;
CREATE INDEX jobs_by_created ON jobs (created_at);
CREATE INDEX jobs_by_status_created ON jobs (status, created_at);
CREATE INDEX jobs_by_type_created ON jobs (type, created_at);

-- Failure groups: jobs failed for good, by type and error class, with the latest time.
-- status and run_at are constant here, but SQLite reads the index alone (covering) only
-- when it holds every column the query names.
CREATE INDEX jobs_failed_for_good ON jobs (type, error_class, finished_at, status, run_at)
    WHERE status = 'failed' AND run_at IS NULL;

-- Throughput: jobs finished per minute (completed, failed for good, cancelled).
CREATE INDEX jobs_by_finished ON jobs (finished_at, status) WHERE finished_at IS NOT NULL;

-- Text in the error: a trigram full-text index of last_error (substring, case-insensitive),
-- kept by triggers in step with the table (external content: the text is stored once).
CREATE VIRTUAL TABLE jobs_errors USING fts5(
    last_error, content = 'jobs', content_rowid = 'seq', tokenize = 'trigram'
);
CREATE TRIGGER jobs_errors_insert AFTER INSERT ON jobs WHEN new.last_error IS NOT NULL BEGIN
    INSERT INTO jobs_errors (rowid, last_error) VALUES (new.seq, new.last_error);
END;
CREATE TRIGGER jobs_errors_update AFTER UPDATE OF last_error ON jobs
    WHEN old.last_error IS NOT new.last_error BEGIN
    INSERT INTO jobs_errors (jobs_errors, rowid, last_error)
        SELECT 'delete', old.seq, old.last_error WHERE old.last_error IS NOT NULL;
    INSERT INTO jobs_errors (rowid, last_error)
        SELECT new.seq, new.last_error WHERE new.last_error IS NOT NULL;
END;
CREATE TRIGGER jobs_errors_delete AFTER DELETE ON jobs WHEN old.last_error IS NOT NULL BEGIN
    INSERT INTO jobs_errors (jobs_errors, rowid, last_error) VALUES ('delete', old.seq, old.last_error);
END;
INSERT INTO jobs_errors (jobs_errors) VALUES ('rebuild');
