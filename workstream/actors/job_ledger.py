"""The Registry's decisions: each command applied to a transaction, as plain code.

A command is checked against the transition table (`jobs.states`), written through the
`Transaction`, and its answer and events are recorded in the `Batch`, to be heard of only
after the commit. No actor and no thread here, so that every rule can be tested with the
in-memory store and a number for the time; the Registry actor only feeds it batches.

The ledger also keeps what only this process knows: the jobs it runs (for lease renewal,
and to write an outcome without reading the job back) and the timed-out calls that still
run (so the job is not run beside itself).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from workstream.actors.batch import Batch
from workstream.actors.intake import Intake
from workstream.actors.registry_messages import (
    AttemptEnded,
    Barrier,
    Cancel,
    Claim,
    Claimed,
    Create,
    Created,
    Finish,
    Outcome,
    Recover,
    Release,
    RenewLeases,
    Retry,
    Sweep,
    Swept,
)
from workstream.actors.repair import stored_already
from workstream.errors import (
    IllegalTransition,
    NotFound,
    StaleAttempt,
    StorageUnavailable,
    WorkStreamError,
)
from workstream.jobs import attempts, states
from workstream.jobs.attempts import Attempt
from workstream.jobs.events import (
    JOB_CANCELLED,
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_FENCED,
    JOB_RECOVERED,
    JOB_RELEASED,
    JOB_RETRIED,
    JobEvent,
)
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.store.base import Transaction
from workstream.units import shorten

__all__ = ["JobLedger"]

# The Registry's log: operators find these records where they always were.
log = logging.getLogger("workstream.actors.registry")

# What a failed transaction must put back: (running, abandoned).
Snapshot = tuple[dict[str, Job], dict[str, int]]


class JobLedger:
    def __init__(
        self,
        *,
        owner: str,
        new_id: Callable[[], str],
        retry_policy: RetryPolicy,
        lease_duration: float,
        default_max_retries: int,
    ) -> None:
        self._intake = Intake(new_id=new_id, default_max_retries=default_max_retries)
        self._owner = owner
        self._policy = retry_policy
        self._lease = lease_duration
        # Jobs this process claimed and runs: id -> the job as the claim stored it. While
        # the store still holds it as claimed (status, attempt and owner: what every
        # update is fenced on), that is the stored row but for a renewed lease, so an
        # outcome is written without reading the job back.
        self._running: dict[str, Job] = {}
        self._abandoned: dict[str, int] = {}  # job id -> attempt whose timed-out call runs on

    def snapshot(self) -> Snapshot:
        """What `restore` puts back if the transaction does not commit."""
        return dict(self._running), dict(self._abandoned)

    def restore(self, snapshot: Snapshot) -> None:
        self._running, self._abandoned = snapshot

    def apply(self, command: Any, tx: Transaction, batch: Batch) -> None:
        """Decide `command` in `tx`. A refusal (a WorkStreamError) is its answer and writes
        nothing; StorageUnavailable and any other error propagate: the batch rolls back."""
        handler = self._HANDLERS.get(type(command))
        if handler is None:
            log.warning("registry ignored unknown message %r", type(command).__name__)
            return
        reply = getattr(command, "reply", None)
        try:
            value = handler(self, command, tx, batch)
        except StorageUnavailable:
            raise  # the whole batch rolls back
        except WorkStreamError as refused:
            batch.answers.append((reply, None, refused))
        else:
            batch.answers.append((reply, value, None))

    # -- command handlers (inside the batch's transaction) ------------------------------

    def _create(self, command: Create, tx: Transaction, batch: Batch) -> Created:
        return self._intake.create(command, tx, batch)

    def _claim(self, command: Claim, tx: Transaction, batch: Batch) -> Claimed:
        now = batch.now
        claimed = self._take(tx, batch, command.limit)
        # A retry starts at its run_at, not at the next sweep: a claim with room left
        # re-queues the failed jobs whose backoff is over, and takes them. (A full claim
        # costs no extra query; while the queue stays full, the sweep re-queues them.)
        room = command.limit - len(claimed)
        if room > 0 and self._requeue_due(tx, batch, room)[1] > 0:
            claimed += self._take(tx, batch, room)
        next_run_at = tx.next_run_at(now) if len(claimed) < command.limit else None
        return Claimed(claimed, next_run_at)

    def _take(self, tx: Transaction, batch: Batch, limit: int) -> list[Job]:
        claimed = []
        for job in tx.claimable(batch.now, limit):
            taken = states.claim(job, owner=self._owner, now=batch.now, lease=self._lease)
            if tx.update(taken, job):
                claimed.append(taken)
                self._running[taken.id] = taken
                batch.claims.append((job, taken))
        return claimed

    def _finish(self, command: Finish, tx: Transaction, batch: Batch) -> None:
        outcome = command.outcome
        held = self._running.get(outcome.job_id)
        if held is not None and held.attempts == outcome.attempt:
            del self._running[outcome.job_id]
        else:
            held = None
        if outcome.abandoned:
            self._abandoned[outcome.job_id] = outcome.attempt
        job = held if held is not None and held.owner == outcome.owner else None
        repeat = False
        try:
            done = None
            if job is not None:
                # The job as claimed; the update is fenced, so if the store changed it
                # meanwhile (lease lost), nothing is written and the stored job decides.
                done = self._outcome(job, outcome, batch.now)
                if not tx.update(done, job):
                    done = None
            if done is None:
                job = tx.get(outcome.job_id)
                if job is None:
                    log.error("finished job %s is not in the store", outcome.job_id)
                    return
                done = self._outcome(job, outcome, batch.now)
                if not tx.update(done, job):
                    raise StaleAttempt(f"job {job.id} changed while attempt {outcome.attempt} ran")
        except StaleAttempt as exc:
            assert job is not None  # raised above only with the job in hand
            if batch.retrying and stored_already(job, outcome):
                # Kept from a batch whose COMMIT was reported failed but had landed: this
                # outcome is stored (its attempt record too); its events were never published.
                done = job
                repeat = True
            else:
                log.warning(
                    "late outcome refused: %s", exc, extra={"event": JOB_FENCED, "job_id": job.id}
                )
                batch.events.append(
                    JobEvent(
                        JOB_FENCED,
                        job.id,
                        job.type,
                        outcome.attempt,
                        batch.now,
                        worker=outcome.worker,
                        reason="completed" if outcome.error is None else "failed",
                    )
                )
                return
        if not repeat:
            assert job is not None  # the job as the attempt ran (claimed, or read back)
            tx.add_attempt(self._attempt_of(job, outcome, batch.now))
        kind = JOB_COMPLETED if outcome.error is None else JOB_FAILED
        batch.events.append(
            JobEvent(
                kind,
                done.id,
                done.type,
                outcome.attempt,
                batch.now,
                worker=outcome.worker,
                duration_ms=round(outcome.duration * 1000, 3),
                error=outcome.error,
                final=done.finished,
                run_at=done.run_at,
            )
        )

    def _outcome(self, job: Job, outcome: Outcome, now: float) -> Job:
        """The job after this attempt (StaleAttempt if the attempt no longer holds it)."""
        if outcome.error is None:
            return states.complete(
                job, attempt=outcome.attempt, owner=outcome.owner, result=outcome.result, now=now
            )
        failed = states.fail(
            job,
            attempt=outcome.attempt,
            owner=outcome.owner,
            error=outcome.error,
            now=now,
            policy=self._policy,
        )
        return failed.replace(error_class=_error_class(outcome))

    @staticmethod
    def _attempt_of(job: Job, outcome: Outcome, now: float) -> Attempt:
        """The history record of the attempt `outcome` reports (`job` as it ran)."""
        failed = outcome.error is not None
        return Attempt(
            job_id=outcome.job_id,
            number=outcome.attempt,
            outcome=(outcome.ending or attempts.FAILED) if failed else attempts.COMPLETED,
            finished_at=now,
            started_at=job.started_at,
            node=outcome.owner,
            worker=outcome.worker,
            pid=outcome.pid,
            error=states.clip_error(outcome.error) if outcome.error is not None else None,
            error_class=_error_class(outcome) if failed else None,
            traceback=attempts.clip_traceback(outcome.traceback) if failed else None,
            duration=outcome.duration,
        )

    def _load(self, tx: Transaction, job_id: str) -> Job:
        job = tx.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {shorten(job_id)}")
        return job

    def _cancel(self, command: Cancel, tx: Transaction, batch: Batch) -> Job:
        job = self._load(tx, command.job_id)
        done = states.cancel(job, now=batch.now)
        self._write(tx, done, job)
        batch.events.append(JobEvent(JOB_CANCELLED, job.id, job.type, job.attempts, batch.now))
        return done

    def _retry(self, command: Retry, tx: Transaction, batch: Batch) -> Job:
        job = self._load(tx, command.job_id)
        if job.id in self._abandoned:
            raise IllegalTransition(
                "cannot retry the job yet: its last attempt timed out and its handler is "
                "still running"
            )
        again = states.retry(job, now=batch.now)
        self._write(tx, again, job)
        batch.events.append(
            JobEvent(JOB_RETRIED, job.id, job.type, job.attempts, batch.now, reason="manual")
        )
        return again

    @staticmethod
    def _write(tx: Transaction, job: Job, expected: Job) -> None:
        if not tx.update(job, expected):
            raise StorageUnavailable(f"job {job.id} changed during its own transaction")

    def _requeue_due(self, tx: Transaction, batch: Batch, limit: int) -> tuple[int, int]:
        """Failed jobs whose backoff is over become pending: (found due, re-queued)."""
        now = batch.now
        requeued = 0
        due = tx.due_retries(now, limit)
        for job in due:
            if job.id in self._abandoned:
                continue  # its timed-out call still runs here: no second run beside it
            again = states.requeue(job, now=now)
            if tx.update(again, job):
                requeued += 1
                batch.events.append(
                    JobEvent(JOB_RETRIED, job.id, job.type, job.attempts, now, reason="backoff")
                )
        return len(due), requeued

    def _sweep(self, command: Sweep, tx: Transaction, batch: Batch) -> Swept:
        now = batch.now
        # Claims re-queue due retries themselves; this catches those no claim has taken
        # yet (every worker busy), so that the API shows them pending.
        due, requeued = self._requeue_due(tx, batch, command.limit)
        recovered = 0
        expired = tx.expired_leases(now, command.limit)
        for job in expired:
            held = self._running.get(job.id)
            if job.owner == self._owner and held is not None and held.attempts == job.attempts:
                continue  # still running here; renewal is due and will extend it
            reason = f"attempt {job.attempts} was interrupted: its lease expired"
            recovered += self._recover_one(tx, batch, job, reason, "lease_expired")
        # Sweep again at once only if a full batch made progress (skipped jobs would
        # otherwise bring the same full batch back for ever).
        more = (due >= command.limit and requeued > 0) or (
            len(expired) >= command.limit and recovered > 0
        )
        return Swept(requeued, recovered, more)

    def _attempt_ended(self, command: AttemptEnded, tx: Transaction, batch: Batch) -> None:
        if self._abandoned.get(command.job_id) == command.attempt:
            del self._abandoned[command.job_id]

    def _recover_one(self, tx: Transaction, batch: Batch, job: Job, reason: str, why: str) -> int:
        back = states.recover(job, now=batch.now, reason=reason)
        back = back.replace(error_class=attempts.INTERRUPTED_CLASS)
        if not tx.update(back, job):
            return 0
        tx.add_attempt(
            Attempt(
                job_id=job.id,
                number=job.attempts,
                outcome=attempts.INTERRUPTED,
                finished_at=batch.now,
                started_at=job.started_at,
                node=job.owner,
                error=states.clip_error(reason),
                error_class=attempts.INTERRUPTED_CLASS,
            )
        )
        self._running.pop(job.id, None)
        batch.events.append(
            JobEvent(
                JOB_RECOVERED, job.id, job.type, job.attempts, batch.now, reason=why, error=reason
            )
        )
        if back.status is JobStatus.FAILED:
            batch.events.append(
                JobEvent(
                    JOB_FAILED, job.id, job.type, job.attempts, batch.now, error=reason, final=True
                )
            )
        return 1

    def _recover(self, command: Recover, tx: Transaction, batch: Batch) -> int:
        recovered = 0
        for job in tx.processing(command.owner):
            reason = f"attempt {job.attempts} was interrupted: the server stopped while it ran"
            recovered += self._recover_one(tx, batch, job, reason, "restart")
        return recovered

    def _renew(self, command: RenewLeases, tx: Transaction, batch: Batch) -> int:
        if not self._running:
            return 0
        return tx.renew_leases(self._owner, list(self._running), batch.now + self._lease)

    def _release(self, command: Release, tx: Transaction, batch: Batch) -> int:
        wanted = None if command.job_ids is None else set(command.job_ids)
        released = 0
        for job in tx.processing(self._owner):
            if wanted is not None and job.id not in wanted:
                continue
            back = states.release(job, attempt=job.attempts, owner=self._owner, now=batch.now)
            if tx.update(back, job):
                released += 1
                tx.add_attempt(
                    Attempt(
                        job_id=job.id,
                        number=job.attempts,
                        outcome=attempts.RELEASED,
                        finished_at=batch.now,
                        started_at=job.started_at,
                        node=job.owner,
                    )
                )
                self._running.pop(job.id, None)
                batch.events.append(
                    JobEvent(JOB_RELEASED, job.id, job.type, job.attempts, batch.now)
                )
        return released

    def _barrier(self, command: Barrier, tx: Transaction, batch: Batch) -> None:
        return None

    _HANDLERS: dict[type, Callable[..., Any]] = {
        Create: _create,
        Claim: _claim,
        Finish: _finish,
        Cancel: _cancel,
        Retry: _retry,
        Sweep: _sweep,
        RenewLeases: _renew,
        Recover: _recover,
        Release: _release,
        Barrier: _barrier,
        AttemptEnded: _attempt_ended,
    }


def _error_class(outcome: Outcome) -> str | None:
    """The class of a failed attempt's error: as the worker said, else read off the text."""
    if outcome.error_is_internal:
        return attempts.INTERNAL_ERROR
    return attempts.clip_class(outcome.error_class) or attempts.error_class_of(outcome.error)
