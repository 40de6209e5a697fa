-- Jobs of one type in one status, newest first: the console's per-type counts (pending,
-- processing, failed, each capped) and GET /jobs?status=...&type=... Without it, SQLite
-- (no table statistics) walks a type's every job to count those in one status: about
-- 1 s for the console overview's type counts at 1,000,000 jobs.
CREATE INDEX jobs_by_status_type_created ON jobs (status, type, created_at, seq);
