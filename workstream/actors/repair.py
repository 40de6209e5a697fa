"""Repair after a COMMIT that was reported failed but may have landed.

The connection can drop while the database commits (docs/scaling.md, "A 503 during an
outage may hide a commit"): the Registry hears an error although the batch is stored.
Two things are then uncertain. A claim may be stored with no worker running the job: it
is undone by a fenced update in a later batch (`Unclaim`), while its lease still runs. An
outcome kept for a later batch may find itself stored already: it then counts as written
(`stored_already`), and its events, never published, are published once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from workstream.actors.batch import Batch
from workstream.actors.registry_messages import Outcome
from workstream.jobs import states
from workstream.jobs.events import JOB_RELEASED, JobEvent
from workstream.jobs.model import Job, JobStatus
from workstream.store.base import Transaction

__all__ = ["CommitRepair", "Unclaim", "stored_already"]

# The Registry's log: operators find these records where they always were.
log = logging.getLogger("workstream.actors.registry")


@dataclass(frozen=True, slots=True)
class Unclaim:
    """Undo this process's claim of a job if a failed commit stored it after all."""

    job_id: str


class CommitRepair:
    """The claims whose commit was reported failed, until a later batch settles them.

    Until then no worker runs those jobs, so a claim that landed is given back exactly as
    it was before (attempt uncounted) instead of waiting for its lease to expire.
    """

    def __init__(self) -> None:
        # id -> (the job before the claim, as claimed)
        self._unconfirmed: dict[str, tuple[Job, Job]] = {}

    def snapshot(self) -> dict[str, tuple[Job, Job]]:
        return dict(self._unconfirmed)

    def restore(self, snapshot: dict[str, tuple[Job, Job]]) -> None:
        self._unconfirmed = snapshot

    def unclaims(self, now: float) -> list[Unclaim]:
        """Undo the unconfirmed claims whose lease still runs; past it, the Sweeper's
        recovery (attempt counted) owns the job."""
        for job_id, (_, taken) in list(self._unconfirmed.items()):
            if taken.lease_expires_at is None or taken.lease_expires_at <= now:
                del self._unconfirmed[job_id]
                log.warning(
                    "unconfirmed claim of job %s left to lease expiry",
                    job_id,
                    extra={"event": "claim_release_expired", "job_id": job_id},
                )
        return [Unclaim(job_id) for job_id in self._unconfirmed]

    def remember(self, claims: list[tuple[Job, Job]]) -> None:
        """The claims of a batch whose commit failed: it may have landed all the same."""
        for before, taken in claims:
            self._unconfirmed[taken.id] = (before, taken)
        if claims:
            log.warning(
                "a claim of %d job(s) failed to commit; if it was stored all the same, "
                "the next batch gives the jobs back",
                len(claims),
                extra={"event": "claim_unconfirmed"},
            )

    def confirm(self, batch: Batch) -> None:
        """`batch` committed: its claims are sure, and its releases happened."""
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

    def unclaim(self, command: Unclaim, tx: Transaction, batch: Batch) -> None:
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


def stored_already(job: Job, outcome: Outcome) -> bool:
    """Whether the stored `job` is what this very outcome made of it: the attempt ended
    and was recorded as this outcome would record it. (Only this attempt's holder can
    end it, so nobody else can have left it so.)"""
    if job.attempts != outcome.attempt or job.owner is not None:
        return False
    if outcome.error is None:
        return job.status is JobStatus.COMPLETED and _same_value(job.result, outcome.result)
    return job.status is JobStatus.FAILED and job.last_error == states.clip_error(outcome.error)


def _same_value(stored: Any, given: Any) -> bool:
    """Whether `stored` is `given` as it reads back from the store (through JSON)."""
    if stored == given:
        return True
    try:
        return bool(stored == json.loads(json.dumps(given)))
    except (TypeError, ValueError):
        return False
