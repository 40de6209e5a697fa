"""The storage protocol. The Registry speaks domain (jobs and transitions); a Store speaks
rows. Every store (in-memory fake, SQLite, PostgreSQL) passes the same contract suite
(`tests/contract/`).

Writes happen only inside `Store.transaction()`, on the Registry's thread: one transaction
per group commit. A failure inside it rolls everything back and surfaces as
`StorageUnavailable`. Reads outside a transaction (`get`, `list`, `counts`) may come from
any thread and must not queue behind the writer.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from workstream.jobs.attempts import Attempt
from workstream.jobs.listing import FailureGroup, JobFilter, JobPage
from workstream.jobs.model import Job, JobStatus


@dataclass(frozen=True)
class Counts:
    """What the gauges read. `ready` is pending and due now: what capacity counts."""

    ready: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def of(self, status: JobStatus) -> int:
        return self.by_status.get(status.value, 0)


class Transaction(Protocol):
    """One atomic unit of writes. Reads inside it see its own writes."""

    def insert(self, job: Job) -> None:
        """Raises Conflict if the id or the idempotency key is taken; the transaction
        stays usable."""

    def get(self, job_id: str) -> Job | None:
        """The job, locked for the rest of the transaction where the store has row locks."""

    def update(self, job: Job, expected: Job) -> bool:
        """Write `job` only if the stored row still has `expected`'s status, attempts and
        owner (fencing). Returns whether it was written."""

    def lock(self, job_ids: list[str]) -> None:
        """A hint: fenced updates of these jobs may follow in this transaction. A store with
        row locks locks their rows now, all in one go, so that each later `update` of them
        is decided from what was read (exactly: nobody else can change a locked row) and
        written with the others instead of costing a round trip of its own. Changes nothing
        that a read or an update of this transaction sees; unknown ids are ignored. Stores
        without row locks do nothing."""

    def find_by_idempotency_key(self, key: str) -> Job | None: ...

    def count_ready(self, now: float, limit: int) -> int:
        """Pending jobs due at `now`, counting no further than `limit`."""

    def claimable(self, now: float, limit: int) -> list[Job]:
        """Up to `limit` pending jobs due at `now`, earliest `run_at` first; skips rows other
        transactions hold."""

    def next_run_at(self, now: float) -> float | None:
        """The earliest `run_at` after `now` of a pending job (delayed) or of a failed job
        (its next attempt): when a claim may next find work."""

    def due_retries(self, now: float, limit: int) -> list[Job]:
        """Failed jobs whose backoff is over (`run_at <= now`)."""

    def expired_leases(self, now: float, limit: int) -> list[Job]:
        """Processing jobs whose lease ran out before `now`."""

    def processing(self, owner: str | None = None) -> list[Job]:
        """Processing jobs, all of them or those of one owner."""

    def renew_leases(self, owner: str, job_ids: list[str], until: float) -> int: ...

    def add_attempt(self, attempt: Attempt) -> None:
        """Record one attempt (written with the outcome it records)."""

    def delete_attempts(self, job_ids: list[str]) -> int:
        """Delete the attempts of these jobs: whoever deletes jobs deletes their attempts in
        the same transaction. Returns how many attempts were deleted."""


class Store(Protocol):
    exclusive: bool
    """True when one process owns the database while it runs (SQLite's lock file, the
    in-memory fake): at start-up every job left `processing` was that process's, and is
    recovered at once. False when several nodes share it (PostgreSQL): a node recovers
    only jobs whose lease expired, whoever held them."""

    def watch(self, wake: Callable[[], None]) -> None:
        """Call `wake()` (from any thread, without blocking) whenever another process may
        have made work due here: a job submitted, retried or released on another node.
        Also called once after every (re)connection, to catch up on anything missed.
        Stores used by one process only do nothing."""

    def open(self) -> None:
        """Take the database for this process (refusing if another holds it), create or
        upgrade the schema."""

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def get(self, job_id: str) -> Job | None: ...

    def list(self, query: JobFilter) -> JobPage:
        """The jobs `query` selects (see `JobFilter`)."""

    def counts(self, now: float) -> Counts: ...

    def count(self, query: JobFilter, cap: int) -> int:
        """How many jobs `query`'s filters match (not its position), up to `cap`."""

    def failure_groups(self, limit: int) -> builtins.list[FailureGroup]:
        """Jobs failed for good by (type, error class), largest first, at most `limit`."""

    def finished_per_minute(self, since: float) -> builtins.list[tuple[float, str, int]]:
        """(minute start, status, jobs) of the completed and failed-for-good jobs that
        finished at or after `since`."""

    def attempts(self, job_id: str) -> builtins.list[Attempt]:
        """The attempts of a job, by number (and in the order recorded)."""

    def ping(self) -> None:
        """Raise StorageUnavailable if the store cannot be read."""


def chunked(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
