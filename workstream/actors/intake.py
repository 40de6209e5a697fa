"""New jobs: a `Create` turned into stored jobs inside the Registry's transaction.

Every refusal is decided in the transaction that would store the jobs, so that a refused
job is never stored and a stored one is never refused: the capacity (`count_ready`), an
Idempotency-Key already used, and a caller that stopped waiting (its `Ticket`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from workstream.actors.batch import Batch
from workstream.actors.registry_messages import Create, Created
from workstream.errors import Conflict, IdempotencyKeyReused, QueueFull, ServiceBusy
from workstream.jobs.events import JOB_CREATED, JOB_REJECTED, JobEvent
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.types import PRIORITY_DEFAULT
from workstream.store.base import Transaction

__all__ = ["Intake"]


class Intake:
    def __init__(self, *, new_id: Callable[[], str], default_max_retries: int) -> None:
        self._new_id = new_id
        self._default_max_retries = default_max_retries

    def create(self, command: Create, tx: Transaction, batch: Batch) -> Created:
        """Store the command's jobs, all or none, or refuse it; an Idempotency-Key seen
        before gets the stored job back."""
        if command.ticket is not None and not command.ticket.take():
            # Nobody waits for the answer any more (the client got a 503 saying nothing
            # was stored): storing the job now would make that answer a lie.
            raise ServiceBusy("the request waited too long; nothing was stored")
        now = batch.now
        key = command.idempotency_key
        if key is not None:
            existing = tx.find_by_idempotency_key(key)
            if existing is not None:
                return self._repeat(existing, command)
        jobs = [
            Job(
                id=self._new_id(),
                type=spec.type,
                payload=spec.payload,
                status=JobStatus.PENDING,
                max_retries=(
                    self._default_max_retries if spec.max_retries is None else spec.max_retries
                ),
                created_at=now,
                updated_at=now,
                run_at=now if spec.run_at is None or spec.run_at < now else spec.run_at,
                idempotency_key=key,
                request_hash=command.request_hash if key is not None else None,
                priority=PRIORITY_DEFAULT if spec.priority is None else spec.priority,
            )
            for spec in command.specs
        ]
        due = sum(1 for job in jobs if job.run_at is not None and job.run_at <= now)
        if command.limit is not None and due:
            waiting = tx.count_ready(now, command.limit + 1)
            if waiting + due > command.limit:
                for job_type, count in Counter(job.type for job in jobs).items():
                    batch.events.append(JobEvent(JOB_REJECTED, "", job_type, 0, now, count=count))
                raise QueueFull(
                    f"the queue is full: {waiting} jobs are waiting to start and at most "
                    f"{command.limit} may wait; "
                    + (
                        "retry later"
                        if due <= command.limit
                        else f"this request brings {due} due jobs, more than fit at once"
                    )
                )
        for job in jobs:
            try:
                tx.insert(job)
            except Conflict:
                # Another node stored this key after our look-up (a shared database):
                # the insert waited for its commit, so the look-up now finds it.
                existing = tx.find_by_idempotency_key(key) if key is not None else None
                if existing is None:
                    raise
                return self._repeat(existing, command)
            batch.events.append(JobEvent(JOB_CREATED, job.id, job.type, 0, now, run_at=job.run_at))
        return Created(jobs, created=True)

    @staticmethod
    def _repeat(existing: Job, command: Create) -> Created:
        """An Idempotency-Key seen before: the same request gets the stored job back."""
        if existing.request_hash != command.request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request"
            )
        return Created([existing], created=False)
