-- Periodic jobs: the latest slot each schedule fired (by any node), written in the
-- transaction that creates the slot's job. Times are Unix seconds.
CREATE TABLE schedule_slots (
    name        TEXT PRIMARY KEY,
    last_slot   REAL NOT NULL,
    last_job_id TEXT,
    fired_at    REAL NOT NULL
);

-- Retention: finished jobs (completed, cancelled, failed for good) by status and end time,
-- oldest first. Jobs still to run have no finished_at: no index entry.
CREATE INDEX jobs_finished ON jobs (status, finished_at) WHERE finished_at IS NOT NULL;

-- MAX_SCHEDULED_JOBS counts delayed pending jobs with jobs_by_status_run_at (0001).
