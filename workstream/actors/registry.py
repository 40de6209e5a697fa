"""The Registry: the only writer of job state. Its messages are in `registry_messages`.

Every change (create, claim, complete, fail, requeue, retry, cancel, recover, release)
arrives here as a command, is checked against the transition table (`jobs.states`) and
persisted through the Store. Commands are *group-committed*: the first command to arrive
in an empty buffer makes the Registry `tell` itself `_FLUSH`; since the inbox is FIFO,
every command that arrived before that flush is in its batch. The batch runs in one
transaction; only after the commit are replies resolved and events published. So an
accepted job is on disk before anyone hears that it was accepted.

A command refused by the domain (unknown job, illegal transition, full queue) writes
nothing and fails alone. A storage failure (locked, full) rolls back the whole batch:
requests get `StorageUnavailable`; handler outcomes (`Finish`) are kept and written later,
in a commit of their own, so a finished attempt is not forgotten while the disk is busy.
A failed COMMIT may still have landed (the connection dropped after the server took it):
the claims of such a batch are undone later by a fenced update, and a kept outcome found
already stored counts as written (see `_flush`).
Any other failure (a bug, a value the database refuses) re-runs the batch one command at a
time, so that the command that breaks it fails alone (see docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka

from workstream.actors.events import EventBus
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
from workstream.actors.replies import Reply, answer
from workstream.errors import (
    Conflict,
    IdempotencyKeyReused,
    IllegalTransition,
    NotFound,
    QueueFull,
    ServiceBusy,
    StaleAttempt,
    StorageUnavailable,
    WorkStreamError,
)
from workstream.jobs import states
from workstream.jobs.events import (
    JOB_CANCELLED,
    JOB_COMPLETED,
    JOB_CREATED,
    JOB_FAILED,
    JOB_FENCED,
    JOB_RECOVERED,
    JOB_REJECTED,
    JOB_RELEASED,
    JOB_RETRIED,
    JobEvent,
)
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.store.base import Store, Transaction
from workstream.units import shorten

__all__ = ["Registry", "WriteHealth"]

log = logging.getLogger(__name__)


class _Flush:
    pass


_FLUSH = _Flush()


@dataclass(frozen=True, slots=True)
class _Unclaim:
    """Undo this process's claim of a job if a failed commit stored it after all."""

    job_id: str


@dataclass
class _Batch:
    now: float
    retrying: bool = False  # the batch of work kept from failed batches (see `_flush`)
    events: list[JobEvent] = field(default_factory=list)
    answers: list[tuple[Reply | None, Any, BaseException | None]] = field(default_factory=list)
    claims: list[tuple[Job, Job]] = field(default_factory=list)  # (as read, as claimed)
    released: list[Job] = field(default_factory=list)  # unconfirmed claims undone


class WriteHealth:
    """How the Registry's last commits went, for the health check (read from any thread)."""

    FAILING_AFTER = 3  # consecutive failed commits before health says storage is failing

    def __init__(self) -> None:
        self.consecutive_failures = 0

    @property
    def failing(self) -> bool:
        return self.consecutive_failures >= self.FAILING_AFTER


# -- the actor ------------------------------------------------------------------------


class Registry(pykka.ThreadingActor):
    # Stopped explicitly at shutdown; a daemon thread cannot keep a failed start-up alive.
    use_daemon_thread = True

    def __init__(
        self,
        *,
        store: Store,
        events: EventBus,
        owner: str,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        retry_policy: RetryPolicy,
        lease_duration: float,
        default_max_retries: int,
        write_health: WriteHealth | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._events = events
        self._owner = owner
        self._clock = clock
        self._new_id = new_id
        self._policy = retry_policy
        self._lease = lease_duration
        self._default_max_retries = default_max_retries
        self._buffer: list[Any] = []
        self._unsaved: list[Finish] = []  # outcomes whose batch failed to commit
        # Jobs this process claimed and runs: id -> the job as the claim stored it. While
        # the store still holds it as claimed (status, attempt and owner: what every
        # update is fenced on), that is the stored row but for a renewed lease, so an
        # outcome is written without reading the job back.
        self._running: dict[str, Job] = {}
        self._abandoned: dict[str, int] = {}  # job id -> attempt whose timed-out call runs on
        # Claims whose batch failed to commit: id -> (the job before the claim, as claimed).
        # The COMMIT may have landed all the same; until a later batch has undone the claim
        # (or found it had not landed) no worker runs the job.
        self._unconfirmed: dict[str, tuple[Job, Job]] = {}
        self._write_health = write_health or WriteHealth()

    # Every message is buffered; the flush runs them in one transaction.
    def on_receive(self, message: Any) -> Any:
        if message is _FLUSH:
            self._flush()
            return None
        self._buffer.append(message)
        if len(self._buffer) == 1:
            self.actor_ref.tell(_FLUSH)
        return None

    def _flush(self) -> None:
        unsaved, self._unsaved = self._unsaved, []
        commands, self._buffer = self._buffer, []
        kept = [*self._unclaims(), *unsaved]
        if kept:
            # Work kept from failed batches goes first and alone: if it fails again, the
            # requests that arrived since are not held hostage. A failed batch's COMMIT
            # may have landed, so its claims are undone (fenced: a no-op if they had not
            # landed) before this process claims again, and its outcomes are written.
            self._commit(kept, retrying=True)
        if commands:
            self._commit(commands)

    def _unclaims(self) -> list[_Unclaim]:
        """Undo the unconfirmed claims whose lease still runs; past it, the Sweeper's
        recovery (attempt counted) owns the job."""
        now = self._clock()
        for job_id, (_, taken) in list(self._unconfirmed.items()):
            if taken.lease_expires_at is None or taken.lease_expires_at <= now:
                del self._unconfirmed[job_id]
                log.warning(
                    "unconfirmed claim of job %s left to lease expiry",
                    job_id,
                    extra={"event": "claim_release_expired", "job_id": job_id},
                )
        return [_Unclaim(job_id) for job_id in self._unconfirmed]

    def _commit(self, commands: list[Any], isolate: bool = True, retrying: bool = False) -> None:
        batch = _Batch(now=self._clock(), retrying=retrying)
        running_before = dict(self._running)
        abandoned_before = dict(self._abandoned)
        unconfirmed_before = dict(self._unconfirmed)
        try:
            with self._store.transaction() as tx:
                # The outcomes' rows, locked in one go: their fenced updates are then
                # decided from that read and written together (see Transaction.lock).
                tx.lock([c.outcome.job_id for c in commands if isinstance(c, Finish)])
                for command in commands:
                    self._apply(command, tx, batch)
        except StorageUnavailable as exc:
            # The store cannot write now (locked, full, gone): refuse the requests, keep
            # the outcomes for a later batch. The COMMIT may have landed all the same (the
            # connection dropped while it ran): remember the claims, to undo them.
            self._running, self._abandoned = running_before, abandoned_before
            self._unconfirmed = unconfirmed_before
            self._remember_unconfirmed(batch.claims)
            self._write_health.consecutive_failures += 1
            self._unsaved += [c for c in commands if isinstance(c, Finish)]
            for command in commands:
                if not isinstance(command, Finish | RenewLeases):
                    answer(getattr(command, "reply", None), error=exc)
            return
        except Exception as exc:
            # A bug, or a value the store refuses. Find the command that breaks the batch
            # so that it alone fails: one poison command must not jam every later batch.
            self._running, self._abandoned = running_before, abandoned_before
            self._unconfirmed = unconfirmed_before
            if isolate and len(commands) > 1:
                for command in commands:
                    self._commit([command], isolate=False, retrying=retrying)
                return
            self._refuse_broken(commands, exc)
            return
        self._write_health.consecutive_failures = 0
        for _, taken in batch.claims:
            self._unconfirmed.pop(taken.id, None)  # claimed again, for sure this time
        for job in batch.released:
            log.warning(
                "claim of job %s (attempt %d) released: its commit was reported failed but "
                "had landed, and no worker ran it",
                job.id,
                job.attempts,
                extra={"event": "claim_released", "job_id": job.id, "attempt": job.attempts},
            )
        for reply, value, error in batch.answers:
            answer(reply, value, error)
        self._events.publish(batch.events)

    def _remember_unconfirmed(self, claims: list[tuple[Job, Job]]) -> None:
        for before, taken in claims:
            self._unconfirmed[taken.id] = (before, taken)
        if claims:
            log.warning(
                "a claim of %d job(s) failed to commit; if it was stored all the same, "
                "the next batch gives the jobs back",
                len(claims),
                extra={"event": "claim_unconfirmed"},
            )

    def _refuse_broken(self, commands: list[Any], exc: Exception) -> None:
        log.error(
            "registry command failed: %s",
            type(exc).__name__,
            exc_info=exc,
            extra={"event": "registry_error"},
        )
        for command in commands:
            if isinstance(command, Finish) and not command.outcome.error_is_internal:
                # The outcome cannot be stored (e.g. a result the store refuses): record the
                # attempt as failed instead, so the job does not stay processing.
                outcome = dataclasses.replace(
                    command.outcome,
                    result=None,
                    error=f"internal error: the attempt's outcome could not be stored "
                    f"({type(exc).__name__})",
                    error_is_internal=True,
                )
                self._commit([Finish(outcome)], isolate=False)
            elif not isinstance(command, Finish | RenewLeases):
                error = StorageUnavailable("internal error while storing; nothing was changed")
                answer(getattr(command, "reply", None), error=error)

    def _apply(self, command: Any, tx: Transaction, batch: _Batch) -> None:
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

    def _create(self, command: Create, tx: Transaction, batch: _Batch) -> Created:
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

    def _claim(self, command: Claim, tx: Transaction, batch: _Batch) -> Claimed:
        now = batch.now
        claimed = []
        for job in tx.claimable(now, command.limit):
            taken = states.claim(job, owner=self._owner, now=now, lease=self._lease)
            if tx.update(taken, job):
                claimed.append(taken)
                self._running[taken.id] = taken
                batch.claims.append((job, taken))
        next_run_at = tx.next_run_at(now) if len(claimed) < command.limit else None
        return Claimed(claimed, next_run_at)

    def _finish(self, command: Finish, tx: Transaction, batch: _Batch) -> None:
        outcome = command.outcome
        held = self._running.get(outcome.job_id)
        if held is not None and held.attempts == outcome.attempt:
            del self._running[outcome.job_id]
        else:
            held = None
        if outcome.abandoned:
            self._abandoned[outcome.job_id] = outcome.attempt
        job = held if held is not None and held.owner == outcome.owner else None
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
            if batch.retrying and self._stored_already(job, outcome):
                # Kept from a batch whose COMMIT was reported failed but had landed: this
                # outcome is stored; its events were never published.
                done = job
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

    @staticmethod
    def _stored_already(job: Job, outcome: Outcome) -> bool:
        """Whether the stored `job` is what this very outcome made of it: the attempt ended
        and was recorded as this outcome would record it. (Only this attempt's holder can
        end it, so nobody else can have left it so.)"""
        if job.attempts != outcome.attempt or job.owner is not None:
            return False
        if outcome.error is None:
            return job.status is JobStatus.COMPLETED and _same_value(job.result, outcome.result)
        return job.status is JobStatus.FAILED and job.last_error == states.clip_error(outcome.error)

    def _outcome(self, job: Job, outcome: Outcome, now: float) -> Job:
        """The job after this attempt (StaleAttempt if the attempt no longer holds it)."""
        if outcome.error is None:
            return states.complete(
                job, attempt=outcome.attempt, owner=outcome.owner, result=outcome.result, now=now
            )
        return states.fail(
            job,
            attempt=outcome.attempt,
            owner=outcome.owner,
            error=outcome.error,
            now=now,
            policy=self._policy,
        )

    def _load(self, tx: Transaction, job_id: str) -> Job:
        job = tx.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {shorten(job_id)}")
        return job

    def _cancel(self, command: Cancel, tx: Transaction, batch: _Batch) -> Job:
        job = self._load(tx, command.job_id)
        done = states.cancel(job, now=batch.now)
        self._write(tx, done, job)
        batch.events.append(JobEvent(JOB_CANCELLED, job.id, job.type, job.attempts, batch.now))
        return done

    def _retry(self, command: Retry, tx: Transaction, batch: _Batch) -> Job:
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

    def _sweep(self, command: Sweep, tx: Transaction, batch: _Batch) -> Swept:
        now = batch.now
        requeued = 0
        due = tx.due_retries(now, command.limit)
        for job in due:
            if job.id in self._abandoned:
                continue  # its timed-out call still runs here: no second run beside it
            again = states.requeue(job, now=now)
            if tx.update(again, job):
                requeued += 1
                batch.events.append(
                    JobEvent(JOB_RETRIED, job.id, job.type, job.attempts, now, reason="backoff")
                )
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
        more = (len(due) >= command.limit and requeued > 0) or (
            len(expired) >= command.limit and recovered > 0
        )
        return Swept(requeued, recovered, more)

    def _attempt_ended(self, command: AttemptEnded, tx: Transaction, batch: _Batch) -> None:
        if self._abandoned.get(command.job_id) == command.attempt:
            del self._abandoned[command.job_id]

    def _recover_one(self, tx: Transaction, batch: _Batch, job: Job, reason: str, why: str) -> int:
        back = states.recover(job, now=batch.now, reason=reason)
        if not tx.update(back, job):
            return 0
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

    def _recover(self, command: Recover, tx: Transaction, batch: _Batch) -> int:
        recovered = 0
        for job in tx.processing(command.owner):
            reason = f"attempt {job.attempts} was interrupted: the server stopped while it ran"
            recovered += self._recover_one(tx, batch, job, reason, "restart")
        return recovered

    def _renew(self, command: RenewLeases, tx: Transaction, batch: _Batch) -> int:
        if not self._running:
            return 0
        return tx.renew_leases(self._owner, list(self._running), batch.now + self._lease)

    def _release(self, command: Release, tx: Transaction, batch: _Batch) -> int:
        wanted = None if command.job_ids is None else set(command.job_ids)
        released = 0
        for job in tx.processing(self._owner):
            if wanted is not None and job.id not in wanted:
                continue
            back = states.release(job, attempt=job.attempts, owner=self._owner, now=batch.now)
            if tx.update(back, job):
                released += 1
                self._running.pop(job.id, None)
                batch.events.append(
                    JobEvent(JOB_RELEASED, job.id, job.type, job.attempts, batch.now)
                )
        return released

    def _unclaim(self, command: _Unclaim, tx: Transaction, batch: _Batch) -> None:
        entry = self._unconfirmed.pop(command.job_id, None)
        if entry is None:
            return
        before, taken = entry
        # Fenced on the claim (status, attempt, owner): if the claim had not landed, or the
        # job moved on since (recovered, claimed by another node), nothing is written. The
        # job goes back exactly as it was before the claim: RELEASE (processing -> pending,
        # the attempt uncounted), keeping its place in the queue (its run_at).
        if tx.update(before, taken):
            batch.released.append(taken)
            batch.events.append(
                JobEvent(
                    JOB_RELEASED,
                    taken.id,
                    taken.type,
                    taken.attempts,
                    batch.now,
                    reason="unconfirmed_claim",
                )
            )

    def _barrier(self, command: Barrier, tx: Transaction, batch: _Batch) -> None:
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
        _Unclaim: _unclaim,
    }


def _same_value(stored: Any, given: Any) -> bool:
    """Whether `stored` is `given` as it reads back from the store (through JSON)."""
    if stored == given:
        return True
    try:
        return bool(stored == json.loads(json.dumps(given)))
    except (TypeError, ValueError):
        return False
