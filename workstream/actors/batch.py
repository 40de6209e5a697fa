"""What one Registry transaction decided, held back until it commits.

Commands are decided inside the transaction, but nobody may hear of a decision before the
commit: replies and events wait here, and are dropped with the batch if it rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workstream.actors.replies import Reply
from workstream.jobs.events import JobEvent
from workstream.jobs.model import Job

__all__ = ["Answer", "Batch"]

# A reply to resolve after the commit: (reply, value, error), error None on success.
Answer = tuple[Reply | None, Any, BaseException | None]


@dataclass
class Batch:
    now: float  # one time for every command in the transaction
    retrying: bool = False  # work kept from failed batches (see `Committer.flush`)
    events: list[JobEvent] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    claims: list[tuple[Job, Job]] = field(default_factory=list)  # (as read, as claimed)
    released: list[Job] = field(default_factory=list)  # unconfirmed claims undone
    unpark: bool = False  # an `Unpark` came: the parked claim is answered in this batch
    poke: bool = False  # an `Unpark(answer=False)` came: the parked claim runs in this batch
    scheduled: int | None = None  # delayed jobs, once counted (MAX_SCHEDULED_JOBS)
