-- Scheduling (docs/scheduling.md): priorities, per-type controls, claim indexes.

-- 0 starts first, 9 last; jobs stored before this migration get the default.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;

-- The claim: pending jobs of one type by priority, then due time, then submission order;
-- its leading column also lists the types with pending jobs (a skip scan, one probe each).
CREATE INDEX jobs_pending_by_type ON jobs (type, priority, run_at, seq)
    WHERE status = 'pending';

-- Aging: pending jobs of one type by due time (the oldest count as top priority).
CREATE INDEX jobs_pending_by_type_age ON jobs (type, run_at, seq) WHERE status = 'pending';

-- Running jobs of a type (concurrency limits count the rows, never memory).
CREATE INDEX jobs_processing_by_type ON jobs (type) WHERE status = 'processing';

-- One row per job type that was ever paused, limited or held back: shared state.
CREATE TABLE job_types (
    name          TEXT    PRIMARY KEY,
    paused        INTEGER NOT NULL DEFAULT 0,
    blocked_until REAL,
    window_start  REAL,
    window_count  INTEGER NOT NULL DEFAULT 0
);
