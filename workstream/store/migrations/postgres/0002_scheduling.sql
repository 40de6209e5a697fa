-- Scheduling (docs/scheduling.md): priorities, per-type controls, claim indexes.

-- 0 starts first, 9 last; a constant default adds the column without rewriting the table.
ALTER TABLE jobs ADD COLUMN priority smallint NOT NULL DEFAULT 5;

-- The claim: pending jobs of one type by priority, then due time, then submission order;
-- its leading column also lists the types with pending jobs (a skip scan, one probe each).
CREATE INDEX jobs_pending_by_type ON jobs (type, priority, run_at, seq)
    WHERE status = 'pending';

-- Aging: pending jobs of one type by due time (the oldest count as top priority).
CREATE INDEX jobs_pending_by_type_age ON jobs (type, run_at, seq) WHERE status = 'pending';

-- Running jobs of a type (concurrency limits count the rows, never memory).
CREATE INDEX jobs_processing_by_type ON jobs (type) WHERE status = 'processing';

-- One row per job type that was ever paused, limited or held back: shared state. A claim
-- of a limited type locks its row (FOR UPDATE), so claims of it by several nodes take
-- turns while claims of other types do not wait.
CREATE TABLE job_types (
    name          text             PRIMARY KEY,
    paused        boolean          NOT NULL DEFAULT false,
    blocked_until double precision,
    window_start  double precision,
    window_count  integer          NOT NULL DEFAULT 0
);
