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
import time
from collections.abc import Callable, Mapping
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
    Purge,
    Purged,
    Recover,
    Release,
    RenewLeases,
    Retry,
    SetPaused,
    Sweep,
    Swept,
    Unpark,
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
    JOB_SNOOZED,
    MAKES_WORK,
    JobEvent,
)
from workstream.jobs.model import Job, JobStatus
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.throttle import Throttle
from workstream.jobs.types import TypeControl
from workstream.store.base import Transaction
from workstream.units import shorten

__all__ = ["JobLedger"]

# The Registry's log: operators find these records where they always were.
log = logging.getLogger("workstream.actors.registry")

# While a limit holds due jobs back, claim again at least this often (a slot freed by a
# job's end on another node, or by an expired lease, wakes nobody here).
HELD_RECHECK = 1.0

# What a failed transaction must put back: (running, abandoned, parked claim).
Snapshot = tuple[dict[str, Job], dict[str, int], Claim | None]


class _Parked:
    """A claim's value when it found nothing and was parked: nothing to answer yet."""


_PARKED = _Parked()


class JobLedger:
    def __init__(
        self,
        *,
        owner: str,
        new_id: Callable[[], str],
        retry_policy: RetryPolicy,
        lease_duration: float,
        default_max_retries: int,
        max_scheduled: int | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self._throttle = throttle or Throttle()
        self._intake = Intake(
            new_id=new_id, default_max_retries=default_max_retries, max_scheduled=max_scheduled
        )
        self._owner = owner
        self._policy = retry_policy
        self._lease = lease_duration
        # Jobs this process claimed and runs: id -> the job as the claim stored it. While
        # the store still holds it as claimed (status, attempt and owner: what every
        # update is fenced on), that is the stored row but for a renewed lease, so an
        # outcome is written without reading the job back.
        self._running: dict[str, Job] = {}
        self._abandoned: dict[str, int] = {}  # job id -> attempt whose timed-out call runs on
        self._parked: Claim | None = None  # see `Claim.parked`
        self._parked_said: float | None = None  # the next_run_at its `parked` last heard

    def snapshot(self) -> Snapshot:
        """What `restore` puts back if the transaction does not commit."""
        return dict(self._running), dict(self._abandoned), self._parked

    def restore(self, snapshot: Snapshot) -> None:
        self._running, self._abandoned, self._parked = snapshot

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
            if value is not _PARKED:
                batch.answers.append((reply, value, None))

    def run_parked(self, tx: Transaction, batch: Batch) -> None:
        """At the end of a transaction: run the parked claim if the transaction made work
        (or an `Unpark` asked), so that it takes that work in the same commit."""
        parked = self._parked
        if parked is None:
            return
        if batch.unpark:
            self._parked = None
            self.apply(Claim(parked.limit, parked.reply), tx, batch)  # answered, found or not
        elif batch.poke or any(event.kind in MAKES_WORK for event in batch.events):
            self.apply(parked, tx, batch)  # answered if it finds work, else parked still

    # -- command handlers (inside the batch's transaction) ------------------------------

    def _create(self, command: Create, tx: Transaction, batch: Batch) -> Created:
        return self._intake.create(command, tx, batch)

    def _claim(self, command: Claim, tx: Transaction, batch: Batch) -> Claimed | _Parked:
        now = batch.now
        claimed, wake_at, held = self._take(tx, batch, command.limit)
        # A retry starts at its run_at, not at the next sweep: a claim with room left
        # re-queues the failed jobs whose backoff is over, and takes them. (A full claim
        # costs no extra query; while the queue stays full, the sweep re-queues them.)
        room = command.limit - len(claimed)
        if room > 0 and self._requeue_due(tx, batch, room)[1] > 0:
            more, again, held_again = self._take(tx, batch, room)
            claimed += more
            held = held or held_again
            wake_at = again if wake_at is None else min(wake_at, again or wake_at)
        next_run_at = None
        if len(claimed) < command.limit:
            next_run_at = tx.next_run_at(now)
            if wake_at is not None:  # a rate window's end, a RateLimited hold's end
                next_run_at = wake_at if next_run_at is None else min(next_run_at, wake_at)
        if self._parked is not None and command.parked is not None and self._parked is not command:
            # One parking claim (the Dispatcher's) in flight at a time: an older parked
            # claim is answered, not lost. A Worker's claim (finish-and-claim) never parks
            # and leaves the parked one in place.
            batch.answers.append((self._parked.reply, Claimed([], next_run_at, held), None))
            self._parked = None
        if not claimed and command.parked is not None:
            if self._parked is not command or next_run_at != self._parked_said:
                # Newly parked, or the next time to look changed (a delayed job, a rate
                # window): say when to look again, and whether a limit holds jobs back.
                batch.answers.append((command.parked, Claimed([], next_run_at, held), None))
                self._parked, self._parked_said = command, next_run_at
            return _PARKED
        if self._parked is command:
            self._parked = None
        return Claimed(claimed, next_run_at, held)

    def _unpark(self, command: Unpark, tx: Transaction, batch: Batch) -> None:
        if command.answer:
            batch.unpark = True
        else:
            batch.poke = True

    def _take(
        self, tx: Transaction, batch: Batch, limit: int
    ) -> tuple[list[Job], float | None, bool]:
        """Claim up to `limit` due jobs as the Throttle orders and limits them: (claimed,
        when a held-back type may start, whether a limit held any due job back)."""
        now, throttle = batch.now, self._throttle
        controls = tx.pending_types()
        if not controls:
            return [], None, False
        types = list(controls)
        gated = throttle.gated(name for name in types if not _paused(controls, name))
        if gated:
            # Locked (PostgreSQL) before anything of these types is counted: claims of a
            # limited type by several nodes take turns, each counting the rows anew.
            controls = {**controls, **tx.lock_types(gated)}
        plan = throttle.plan(limit=limit, now=now, types=types, controls=controls)
        running: dict[str, list[Job] | int] = {}
        for name in gated:
            limits = throttle.limits(name)
            if name in plan.quotas and limits.max_concurrency is not None:
                # Per key, the running jobs' payloads; otherwise their number will do.
                keyed = limits.concurrency_key is not None
                running[name] = tx.running(name) if keyed else tx.count_running(name)
        fetch = {
            name: throttle.fetch_size(name, quota, running.get(name, 0))
            for name, quota in plan.quotas.items()
        }
        candidates = tx.claimable_by_type(now, fetch, throttle.aged_before(now))
        chosen = throttle.choose(
            limit=limit, now=now, plan=plan, candidates=candidates, running=running
        )
        claimed = []
        started: dict[str, int] = {}
        for job in chosen:
            taken = states.claim(job, owner=self._owner, now=now, lease=self._lease)
            if tx.update(taken, job):
                claimed.append(taken)
                self._running[taken.id] = taken
                batch.claims.append((job, taken))
                started[job.type] = started.get(job.type, 0) + 1
        for name, count in started.items():
            rate = throttle.limits(name).rate_limit
            if rate is None:
                continue
            control = controls.get(name) or TypeControl(name)
            window = rate.window_start(now)
            used = control.window_count if control.window_start == window else 0
            tx.save_type(
                TypeControl(
                    name,
                    control.paused,
                    control.blocked_until,
                    window_start=window,
                    window_count=used + count,
                )
            )
        if plan.held:
            # A slot freed on another node tells nobody here: look again soon.
            plan.wake(now + HELD_RECHECK)
        return claimed, plan.wake_at, plan.held

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
        if outcome.defer is not None:
            self._snoozed(done, outcome, tx, batch)
            return
        if not repeat:
            assert job is not None  # the job as the attempt ran (claimed, or read back)
            tx.add_attempt(self._attempt_of(job, outcome, batch.now))
        kind = JOB_COMPLETED if outcome.error is None else JOB_FAILED
        batch.events.append(
            _ended(kind, done, outcome, batch.now, error=outcome.error, final=done.finished)
        )

    def _outcome(self, job: Job, outcome: Outcome, now: float) -> Job:
        """The job after this attempt (StaleAttempt if the attempt no longer holds it)."""
        if outcome.defer is not None:
            return states.snooze(
                job,
                attempt=outcome.attempt,
                owner=outcome.owner,
                now=now,
                run_at=now + outcome.defer,
            )
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

    def _snoozed(self, done: Job, outcome: Outcome, tx: Transaction, batch: Batch) -> None:
        """A deferred attempt: its event, and with RateLimited the type's hold."""
        if outcome.hold_type and done.run_at is not None:
            control = tx.lock_types([done.type])[done.type]
            if control.blocked_until is None or control.blocked_until < done.run_at:
                tx.save_type(
                    TypeControl(
                        control.name,
                        control.paused,
                        done.run_at,
                        control.window_start,
                        control.window_count,
                    )
                )
        reason = "rate_limited" if outcome.hold_type else "snoozed"
        batch.events.append(_ended(JOB_SNOOZED, done, outcome, batch.now, reason=reason))

    def _set_paused(self, command: SetPaused, tx: Transaction, batch: Batch) -> TypeControl:
        control = tx.lock_types([command.job_type])[command.job_type]
        changed = TypeControl(
            control.name,
            command.paused,
            control.blocked_until,
            control.window_start,
            control.window_count,
        )
        tx.save_type(changed, wake=not command.paused)
        return changed

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
                if command.started:
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

    def _purge(self, command: Purge, tx: Transaction, batch: Batch) -> Purged:
        started = time.perf_counter()
        deleted = tx.delete_finished(
            completed_before=command.completed_before,
            failed_before=command.failed_before,
            limit=command.limit,
        )
        took = time.perf_counter() - started
        return Purged(deleted, more=len(deleted) >= command.limit, seconds=took)

    _HANDLERS: dict[type, Callable[..., Any]] = {
        Create: _create,
        Claim: _claim,
        Unpark: _unpark,
        Finish: _finish,
        Cancel: _cancel,
        Retry: _retry,
        Sweep: _sweep,
        RenewLeases: _renew,
        Recover: _recover,
        Release: _release,
        Barrier: _barrier,
        Purge: _purge,
        AttemptEnded: _attempt_ended,
        SetPaused: _set_paused,
    }


def _ended(kind: str, done: Job, outcome: Outcome, now: float, **fields: Any) -> JobEvent:
    """The event of an attempt that ended (completed, failed, snoozed): `done` is the job
    after it."""
    return JobEvent(
        kind,
        done.id,
        done.type,
        outcome.attempt,
        now,
        worker=outcome.worker,
        duration_ms=round(outcome.duration * 1000, 3),
        run_at=done.run_at,
        **fields,
    )


def _paused(controls: Mapping[str, TypeControl], name: str) -> bool:
    control = controls.get(name)
    return control is not None and control.paused


def _error_class(outcome: Outcome) -> str | None:
    """The class of a failed attempt's error: as the worker said, else read off the text."""
    if outcome.error_is_internal:
        return attempts.INTERNAL_ERROR
    return attempts.clip_class(outcome.error_class) or attempts.error_class_of(outcome.error)
