"""Job events: what happened to a job, as plain data.

The Registry publishes what it committed; Workers publish when a handler starts. The bus
that carries them to listeners is `workstream.actors.events.EventBus`; metrics, logs and
extensions read these records without depending on the actors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JOB_CREATED = "job_created"
JOB_STARTED = "job_started"
JOB_COMPLETED = "job_completed"
JOB_FAILED = "job_failed"  # an attempt failed; `final` says whether the job failed for good
JOB_RETRIED = "job_retried"  # failed -> pending again: by the sweeper (backoff) or manually
JOB_RECOVERED = "job_recovered"  # an interrupted attempt was found (restart, expired lease)
JOB_RELEASED = "job_released"  # graceful shutdown gave a running job back, attempt uncounted
JOB_SNOOZED = "job_snoozed"  # the handler deferred its job (Snooze), attempt uncounted
JOB_CANCELLED = "job_cancelled"
JOB_FENCED = "job_fenced"  # a late completion or failure was refused (lease lost)
JOB_REJECTED = "job_rejected"  # a submission refused because the queue was full

# Events after which jobs may be ready to claim, now or at the event's `run_at`: a job
# failed with runs left is claimable again at its `run_at` (the claim re-queues it).
MAKES_WORK = frozenset(
    {JOB_CREATED, JOB_RETRIED, JOB_RECOVERED, JOB_RELEASED, JOB_FAILED, JOB_SNOOZED}
)


@dataclass(frozen=True, slots=True)
class JobEvent:
    kind: str
    job_id: str
    type: str
    attempt: int
    at: float
    worker: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    final: bool = False
    run_at: float | None = None
    queue_wait: float | None = None
    reason: str | None = None
    count: int = 1

    def fields(self) -> dict[str, Any]:
        """The non-empty fields, for structured logs."""
        out: dict[str, Any] = {"event": self.kind, "job_id": self.job_id, "type": self.type}
        if self.attempt:
            out["attempt"] = self.attempt
        for name in ("worker", "duration_ms", "error", "reason"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.kind == JOB_FAILED:
            out["final"] = self.final
        return out
