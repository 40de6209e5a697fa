"""New jobs: a `Create` turned into stored jobs inside the Registry's transaction.

Every refusal is decided in the transaction that would store the jobs, so that a refused
job is never stored and a stored one is never refused: the capacity (`count_ready`), the
cap on delayed jobs (MAX_SCHEDULED_JOBS, `count_scheduled`), an Idempotency-Key already
used, and a caller that stopped waiting (its `Ticket`). A schedule's slot is recorded in
the transaction that stores its job, and a slot some node already fired stores nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from workstream.actors.batch import Batch
from workstream.actors.registry_messages import Create, Created
from workstream.errors import (
    Conflict,
    IdempotencyKeyReused,
    QueueFull,
    ScheduledJobsFull,
    ServiceBusy,
)
from workstream.jobs.events import JOB_CREATED, JOB_REJECTED, JobEvent
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.schedules import FiredSlot
from workstream.jobs.types import PRIORITY_DEFAULT
from workstream.store.base import Transaction

__all__ = ["Intake"]

# MAX_SCHEDULED_JOBS without counting up to the cap at every commit: far below the cap
# (under SCHEDULED_SLACK of it), the count made at most SCHEDULED_RECOUNT seconds ago plus
# the delayed jobs admitted since will do. It can only run high (jobs that fell due or were
# cancelled meanwhile still count), except for other nodes' admissions of the last second;
# near the cap every commit counts exactly.
SCHEDULED_RECOUNT = 1.0
SCHEDULED_SLACK = 0.9


class Intake:
    def __init__(
        self,
        *,
        new_id: Callable[[], str],
        default_max_retries: int,
        max_scheduled: int | None = None,
    ) -> None:
        self._new_id = new_id
        self._default_max_retries = default_max_retries
        self._max_scheduled = max_scheduled
        self._scheduled: tuple[float, int] | None = None  # (counted at, count + admitted)

    def create(self, command: Create, tx: Transaction, batch: Batch) -> Created:
        """Store the command's jobs, all or none, or refuse it; an Idempotency-Key seen
        before gets the stored job back."""
        if command.ticket is not None and not command.ticket.take():
            # Nobody waits for the answer any more (the client got a 503 saying nothing
            # was stored): storing the job now would make that answer a lie.
            raise ServiceBusy("the request waited too long; nothing was stored")
        now = batch.now
        key = command.idempotency_key
        slot = command.slot
        if slot is not None:
            last = tx.last_slot(slot.name)  # locked: nodes firing it at once queue here
            if last is not None and last >= slot.at:
                found = tx.find_by_idempotency_key(slot.key)
                return Created([found] if found is not None else [], created=False)
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
        delayed = len(jobs) - due
        if self._max_scheduled is not None and delayed:
            self._check_scheduled(tx, batch, delayed, jobs)
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
        if batch.scheduled is not None:
            batch.scheduled += delayed
            if self._scheduled is not None:
                self._scheduled = (self._scheduled[0], batch.scheduled)
        if slot is not None:
            tx.record_slot(FiredSlot(slot.name, slot.at, jobs[0].id if jobs else None, now))
        return Created(jobs, created=True)

    def _check_scheduled(
        self, tx: Transaction, batch: Batch, delayed: int, jobs: list[Job]
    ) -> None:
        """MAX_SCHEDULED_JOBS: the delayed jobs, counted (an index-only count, up to the
        cap) at most once per transaction and, far below the cap, once per
        SCHEDULED_RECOUNT seconds; kept up to date by the admissions that follow."""
        limit = self._max_scheduled
        assert limit is not None
        if batch.scheduled is None:
            known = self._scheduled
            fresh = known is not None and batch.now - known[0] < SCHEDULED_RECOUNT
            if known is not None and fresh and known[1] + delayed <= limit * SCHEDULED_SLACK:
                batch.scheduled = known[1]
            else:
                batch.scheduled = tx.count_scheduled(batch.now, limit + 1)
                self._scheduled = (batch.now, batch.scheduled)
        if batch.scheduled + delayed > limit:
            for job_type, count in Counter(job.type for job in jobs).items():
                batch.events.append(JobEvent(JOB_REJECTED, "", job_type, 0, batch.now, count=count))
            raise ScheduledJobsFull(
                f"too many scheduled jobs: {batch.scheduled} delayed jobs are waiting for "
                f"their run_at and at most {limit} may (MAX_SCHEDULED_JOBS); "
                + ("retry later" if delayed <= limit else f"this request brings {delayed}")
            )

    @staticmethod
    def _repeat(existing: Job, command: Create) -> Created:
        """An Idempotency-Key seen before: the same request gets the stored job back."""
        if existing.request_hash != command.request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request"
            )
        return Created([existing], created=False)
