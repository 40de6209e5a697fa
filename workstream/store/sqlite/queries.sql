-- Every statement the SQLite store sends, by name (format: workstream/store/sql.py).
-- `?` are sqlite3 parameters; `{name}` includes the section `name`; other `{slots}` are
-- filled in Python (see each one).

-- name: columns
-- A job's columns, in the order codec.row_to_job reads them.
id, type, payload, status, attempts, retry_base, max_retries, last_error, result,
created_at, updated_at, started_at, finished_at, run_at, owner, lease_expires_at,
idempotency_key, request_hash, error_class


-- Connections --------------------------------------------------------------------------------

-- name: journal_mode_wal
PRAGMA journal_mode = WAL;

-- name: busy_timeout
-- {milliseconds}: PRAGMA takes no parameters.
PRAGMA busy_timeout = {milliseconds};

-- name: synchronous_full
-- A commit survives power loss.
PRAGMA synchronous = FULL;

-- name: query_only
PRAGMA query_only = 1;


-- Transaction control ----------------------------------------------------------------------

-- name: begin_immediate
-- Takes the write lock at once (waiting up to the busy timeout), not at the first write.
BEGIN IMMEDIATE;

-- name: commit
COMMIT;

-- name: rollback
ROLLBACK;


-- Writes (the writer connection, inside a transaction) -------------------------------------

-- name: insert
INSERT INTO jobs ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: update
-- Fenced on (status, attempts, owner): written only if the row is still as expected.
UPDATE jobs SET status = ?, attempts = ?, retry_base = ?, last_error = ?,
    result = ?, updated_at = ?, started_at = ?, finished_at = ?, run_at = ?,
    owner = ?, lease_expires_at = ?, error_class = ?
WHERE id = ? AND status = ? AND attempts = ? AND owner IS ?;

-- name: find_by_idempotency_key
SELECT {columns} FROM jobs WHERE idempotency_key = ?;

-- name: count_ready
SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'pending' AND run_at <= ? LIMIT ?);

-- name: claimable
SELECT {columns} FROM jobs WHERE status = 'pending' AND run_at <= ?
ORDER BY run_at, seq LIMIT ?;

-- name: next_run_at
-- The next time a job becomes claimable: a delayed pending job, or a failed job's retry
-- (the claim re-queues due retries). Two index-only mins.
SELECT min(at) FROM (
    SELECT min(run_at) AS at FROM jobs WHERE status = 'pending' AND run_at > ?
    UNION ALL
    SELECT min(run_at) FROM jobs WHERE status = 'failed' AND run_at > ?
);

-- name: due_retries
SELECT {columns} FROM jobs WHERE status = 'failed' AND run_at <= ? ORDER BY run_at LIMIT ?;

-- name: expired_leases
SELECT {columns} FROM jobs WHERE status = 'processing' AND lease_expires_at < ?
ORDER BY lease_expires_at LIMIT ?;

-- name: processing
SELECT {columns} FROM jobs WHERE status = 'processing' ORDER BY seq;

-- name: processing_of_owner
SELECT {columns} FROM jobs WHERE status = 'processing' AND owner = ? ORDER BY seq;

-- name: renew_leases
-- {marks}: one `?` per id of the chunk, comma-separated.
UPDATE jobs SET lease_expires_at = ?
WHERE status = 'processing' AND owner = ? AND id IN ({marks});


-- Reads (a connection per reading thread, and the writer's transactions) -------------------

-- name: get
SELECT {columns} FROM jobs WHERE id = ?;

-- name: list_page
-- Up to limit + 1 rows: the store keeps those that fit the byte budget.
-- {filters}: the `list_*` fragments that apply, joined by AND; {order}: `newest` or
-- `oldest`; {source}: `jobs`, or `error_hits` when the error filter found few jobs.
SELECT seq, {columns} FROM {source} WHERE {filters} ORDER BY {order} LIMIT ?;

-- name: newest
created_at DESC, seq DESC

-- name: oldest
created_at, seq

-- name: list_source_jobs
jobs

-- name: list_source_error_hits
-- The few jobs whose error has the text (found in the trigram index), joined in that
-- order: CROSS JOIN keeps SQLite from walking the whole listing index instead.
(SELECT rowid AS hit FROM jobs_errors WHERE jobs_errors MATCH ?) CROSS JOIN jobs ON seq = hit

-- name: list_before
(created_at, seq) < (?, ?)

-- name: list_after
(created_at, seq) > (?, ?)

-- name: list_status
status = ?

-- name: list_type
type = ?

-- name: list_created_after
created_at >= ?

-- name: list_created_before
created_at < ?

-- name: list_id_prefix
-- The id's index range: for a prefix that few ids have.
id >= ? AND id < ?

-- name: list_id_prefix_scan
-- The same, read from the listing index (`+` keeps SQLite off the id index): for a
-- prefix so common that walking the listing order finds a page sooner.
+id >= ? AND +id < ?

-- name: list_idempotency_key
idempotency_key = ?

-- name: list_error_like
-- The error filter where the trigram index found many jobs: checked row by row along the
-- listing order (the index search already said matches are frequent).
last_error LIKE ? ESCAPE '\'

-- name: list_all
1 = 1

-- name: count_matching
-- {source} and {filters} as for list_page; counts no further than the cap.
SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {filters} LIMIT ?);

-- name: error_hits
-- How many jobs' errors have the text, counting no further than the cap.
SELECT count(*) FROM (SELECT 1 FROM jobs_errors WHERE jobs_errors MATCH ? LIMIT ?);

-- name: id_prefix_hits
SELECT count(*) FROM (SELECT 1 FROM jobs WHERE id >= ? AND id < ? LIMIT ?);

-- name: failure_groups
-- Jobs failed for good by (type, error class): one pass over the partial index, which
-- is in group order and holds every column read (SQLite would otherwise pick the status
-- index and read each row).
SELECT type, error_class, count(*), max(finished_at) FROM jobs INDEXED BY jobs_failed_for_good
WHERE status = 'failed' AND run_at IS NULL
GROUP BY type, error_class ORDER BY count(*) DESC, type, error_class LIMIT ?;

-- name: throughput
-- Jobs finished since a time, per minute and status: a range of the finished_at index,
-- which holds both columns read.
SELECT CAST(finished_at / 60 AS INTEGER) * 60 AS minute, status, count(*)
FROM jobs INDEXED BY jobs_by_finished
WHERE finished_at >= ? AND finished_at IS NOT NULL AND status IN ('completed', 'failed')
GROUP BY minute, status;


-- Attempts ----------------------------------------------------------------------------

-- name: attempt_columns
job_id, number, outcome, finished_at, started_at, node, worker, pid, error, error_class,
traceback, duration

-- name: insert_attempt
INSERT INTO job_attempts ({attempt_columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: attempts_of_job
SELECT {attempt_columns} FROM job_attempts WHERE job_id = ? ORDER BY number, id;

-- name: delete_attempts
-- {marks}: one `?` per job id of the chunk.
DELETE FROM job_attempts WHERE job_id IN ({marks});

-- name: count_by_status
SELECT status, count(*) FROM jobs GROUP BY status;

-- name: count_due
SELECT count(*) FROM jobs WHERE status = 'pending' AND run_at <= ?;

-- name: ping
SELECT 1;


-- Migrations (workstream/store/migrations/sqlite/), each in a transaction ---------------

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- name: applied_migrations
SELECT version FROM schema_migrations;

-- name: record_migration
INSERT INTO schema_migrations VALUES (?, ?, strftime('%s','now'));
