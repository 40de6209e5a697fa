-- The jobs table, as in the SQLite schema. Times are Unix seconds (double precision);
-- payload and result are JSON text (not jsonb, which refuses \u0000 and lone-surrogate
-- escapes that JSON text may carry). `seq` is the submission order: listing and its
-- cursors walk it.
CREATE TABLE jobs (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text             NOT NULL UNIQUE,
    type             text             NOT NULL,
    payload          text             NOT NULL,
    status           text             NOT NULL,
    attempts         integer          NOT NULL DEFAULT 0,
    retry_base       integer          NOT NULL DEFAULT 0,
    max_retries      integer          NOT NULL,
    last_error       text,
    result           text,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    started_at       double precision,
    finished_at      double precision,
    run_at           double precision,
    owner            text,
    lease_expires_at double precision,
    idempotency_key  text,
    request_hash     text
);

-- Idempotency keys are unique among the jobs that have one (most have none: no index entry).
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Every status change is a new row version in every index below (no HOT update), so there
-- are few of them, and partial where a status picks the rows.
-- Claims and capacity: pending jobs by due time, then submission order (the claim order).
CREATE INDEX jobs_ready ON jobs (run_at, seq) WHERE status = 'pending';

-- The sweeper: failed jobs whose backoff is over, and expired leases. (Processing jobs by
-- owner, at start-up and shutdown only, use the status index below.)
CREATE INDEX jobs_retry_due ON jobs (run_at) WHERE status = 'failed';
CREATE INDEX jobs_by_lease ON jobs (lease_expires_at) WHERE status = 'processing';

-- Listing filtered by status or type, in submission order.
CREATE INDEX jobs_by_status_seq ON jobs (status, seq);
CREATE INDEX jobs_by_type_seq ON jobs (type, seq)
