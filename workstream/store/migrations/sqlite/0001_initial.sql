-- The jobs table. Times are Unix seconds (REAL); payload and result are JSON text.
-- `seq` is the submission order: listing and its cursors walk it.
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    type             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    retry_base       INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    last_error       TEXT,
    result           TEXT,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    run_at           REAL,
    owner            TEXT,
    lease_expires_at REAL,
    idempotency_key  TEXT UNIQUE,
    request_hash     TEXT
);

-- Claims, capacity and the sweeper: pending/failed jobs by due time.
CREATE INDEX jobs_by_status_run_at ON jobs (status, run_at);

-- Listing filtered by status or type, in submission order.
CREATE INDEX jobs_by_status_seq ON jobs (status, seq);
CREATE INDEX jobs_by_type_seq ON jobs (type, seq);

-- Expired leases.
CREATE INDEX jobs_by_lease ON jobs (lease_expires_at) WHERE status = 'processing';
