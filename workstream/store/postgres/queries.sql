-- Every statement the PostgreSQL store sends, by name (format: workstream/store/sql.py).
-- `%s` are psycopg parameters; `{name}` includes the section `name`; other `{slots}` are
-- filled in Python (see each one). Text columns hold values escaped by codec.py.

-- name: columns
-- A job's columns, in the order codec.row_to_job reads them.
id, type, payload, status, attempts, retry_base, max_retries, last_error, result,
created_at, updated_at, started_at, finished_at, run_at, owner, lease_expires_at,
idempotency_key, request_hash, error_class

-- name: channel
-- Where nodes tell each other about new work (the NOTIFY payload is the sender's token).
workstream_jobs


-- Transaction control ----------------------------------------------------------------------

-- name: begin
BEGIN;

-- name: commit
COMMIT;

-- name: rollback
ROLLBACK;

-- name: notify
-- Sent just before COMMIT, so it is delivered only if the transaction commits.
-- {token}: this store's token, hex digits (NOTIFY takes no parameters).
NOTIFY {channel}, '{token}';

-- name: listen
LISTEN {channel};


-- Writes (the writer connection, inside a transaction) -------------------------------------

-- name: insert
-- A taken id or idempotency key inserts nothing (rowcount 0: Conflict), and the transaction
-- stays usable without a savepoint.
INSERT INTO jobs ({columns})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING;

-- name: update
-- Fenced on (status, attempts, owner): written only if the row is still as expected.
UPDATE jobs SET status = %s, attempts = %s, retry_base = %s, last_error = %s,
    result = %s, updated_at = %s, started_at = %s, finished_at = %s, run_at = %s,
    owner = %s, lease_expires_at = %s, error_class = %s
WHERE id = %s AND status = %s AND attempts = %s AND owner IS NOT DISTINCT FROM %s;

-- name: held_update
-- The same for a row this transaction holds, sent pipelined: it must match its row, so a
-- miss (a bug: nobody else can change a held row) fails the statement itself (division by
-- zero), and nothing sent after it in the same round trip (COMMIT) runs.
WITH written AS ({update} RETURNING 1) SELECT 1 / count(*) FROM written;

-- name: get_for_update
SELECT {columns} FROM jobs WHERE id = %s FOR UPDATE;

-- name: lock
-- The fences of the rows about to be updated, locked in id order (as any other node
-- locking several of them does).
SELECT id, status, attempts, owner FROM jobs WHERE id = ANY(%s)
ORDER BY id FOR UPDATE;

-- name: find_by_idempotency_key
SELECT {columns} FROM jobs WHERE idempotency_key = %s FOR UPDATE;

-- name: count_ready
SELECT count(*) FROM (
    SELECT 1 FROM jobs WHERE status = 'pending' AND run_at <= %s LIMIT %s
) AS ready;

-- name: claimable
-- Nodes claiming at once get disjoint rows and never wait on each other.
SELECT {columns} FROM jobs WHERE status = 'pending' AND run_at <= %s
ORDER BY run_at, seq LIMIT %s FOR UPDATE SKIP LOCKED;

-- name: next_run_at
-- The next time a job becomes claimable: a delayed pending job, or a failed job's retry
-- (the claim re-queues due retries). One min per partial index; LEAST skips a NULL.
SELECT LEAST(
    (SELECT min(run_at) FROM jobs WHERE status = 'pending' AND run_at > %s),
    (SELECT min(run_at) FROM jobs WHERE status = 'failed' AND run_at > %s)
);

-- name: due_retries
SELECT {columns} FROM jobs WHERE status = 'failed' AND run_at <= %s
ORDER BY run_at LIMIT %s FOR UPDATE SKIP LOCKED;

-- name: expired_leases
SELECT {columns} FROM jobs WHERE status = 'processing' AND lease_expires_at < %s
ORDER BY lease_expires_at LIMIT %s FOR UPDATE SKIP LOCKED;

-- name: processing
SELECT {columns} FROM jobs WHERE status = 'processing' ORDER BY seq FOR UPDATE;

-- name: processing_of_owner
SELECT {columns} FROM jobs WHERE status = 'processing' AND owner = %s
ORDER BY seq FOR UPDATE;

-- name: renew_leases
UPDATE jobs SET lease_expires_at = %s
WHERE status = 'processing' AND owner = %s AND id = ANY(%s);


-- Admission: a transaction-scoped advisory lock under a savepoint ------------------------

-- name: admission_savepoint
SAVEPOINT admission;

-- name: admission_rollback
ROLLBACK TO SAVEPOINT admission;

-- name: admission_release
RELEASE SAVEPOINT admission;

-- name: advisory_lock
-- For the rest of the transaction (admission, migrations: the keys are in Python).
SELECT pg_advisory_xact_lock(%s);


-- Reads (the read pool, autocommit) --------------------------------------------------------

-- name: get
SELECT {columns} FROM jobs WHERE id = %s;

-- name: list_page
-- One statement (one snapshot): sizes of up to limit + 1 matching rows (the stored size:
-- large values are not decompressed), the prefix that fits the budget (never less than
-- one row), and only those rows fetched whole, each carrying how many of the rows looked
-- at were left out (more than none: there is a next page).
-- {filters}: the `list_*` fragments that apply, joined by AND; {order}: `newest` or
-- `oldest`. Parameters: the filters', then limit + 1, limit and the byte budget.
WITH page AS (
    SELECT seq, row_number() OVER w AS n,
        sum(octet_length(payload) + coalesce(octet_length(result), 0)) OVER w AS running
    FROM (
        SELECT seq, created_at, payload, result FROM jobs WHERE {filters}
        ORDER BY {order} LIMIT %s
    ) AS candidates
    WINDOW w AS (ORDER BY {order})
),
kept AS (SELECT seq FROM page WHERE n <= %s AND (n = 1 OR running <= %s))
SELECT (SELECT count(*) FROM page) - (SELECT count(*) FROM kept), seq, {columns}
FROM jobs WHERE seq IN (SELECT seq FROM kept) ORDER BY {order};

-- name: newest
created_at DESC, seq DESC

-- name: oldest
created_at, seq

-- name: list_before
(created_at, seq) < (%s, %s)

-- name: list_after
(created_at, seq) > (%s, %s)

-- name: list_status
status = %s

-- name: list_type
type = %s

-- name: list_created_after
created_at >= %s

-- name: list_created_before
created_at < %s

-- name: list_id_prefix
-- A range of the jobs_id_prefix index (byte order, whatever the database's collation).
id COLLATE "C" >= %s AND id COLLATE "C" < %s

-- name: list_idempotency_key
idempotency_key = %s

-- name: list_error
-- Text anywhere in the error, case-insensitively: the trigram index (jobs_last_error_trgm)
-- when few rows match, else the planner walks the listing order.
last_error ILIKE %s

-- name: list_all
TRUE

-- name: count_matching
-- {filters} as for list_page; counts no further than the cap.
SELECT count(*) FROM (SELECT 1 FROM jobs WHERE {filters} LIMIT %s) AS matching;

-- name: failure_groups
-- Jobs failed for good by (type, error class): one pass over the partial index, read
-- alone (index-only) and in group order. The inner ORDER BY is what makes the planner
-- take it: otherwise it prefers jobs_retry_due (`run_at IS NULL`) and reads every row.
SELECT type, error_class, count(*), max(finished_at) FROM (
    SELECT type, error_class, finished_at FROM jobs
    WHERE status = 'failed' AND run_at IS NULL ORDER BY type, error_class
) AS failed
GROUP BY type, error_class ORDER BY count(*) DESC, type, error_class LIMIT %s;

-- name: throughput
-- Jobs finished since a time, per minute and status (a range of the finished_at index).
SELECT floor(finished_at / 60) * 60 AS minute, status, count(*) FROM jobs
WHERE finished_at >= %s AND finished_at IS NOT NULL AND status IN ('completed', 'failed')
GROUP BY minute, status;

-- name: attempt_columns
job_id, number, outcome, finished_at, started_at, node, worker, pid, error, error_class,
traceback, duration

-- name: insert_attempt
INSERT INTO job_attempts ({attempt_columns})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: attempts_of_job
SELECT {attempt_columns} FROM job_attempts WHERE job_id = %s ORDER BY number, id;

-- name: delete_attempts
DELETE FROM job_attempts WHERE job_id = ANY(%s);

-- name: counts
SELECT status, count(*), count(*) FILTER (WHERE status = 'pending' AND run_at <= %s)
FROM jobs GROUP BY status;

-- name: ping
SELECT 1;


-- Migrations (workstream/store/migrations/postgres/), each in a transaction -------------

-- name: migration_statement_timeout
-- {timeout}: milliseconds (SET takes no parameters).
SET LOCAL statement_timeout = {timeout};

-- name: migration_lock_timeout
SET LOCAL lock_timeout = {timeout};

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at double precision NOT NULL
);

-- name: migration_applied
SELECT 1 FROM schema_migrations WHERE version = %s;

-- name: record_migration
INSERT INTO schema_migrations VALUES (%s, %s, extract(epoch from now()));
