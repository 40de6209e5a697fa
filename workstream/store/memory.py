"""An in-memory Store for unit tests: the same contract as SQLite, nothing durable.

Transactions stage their writes and apply them on commit, so a failing transaction
changes nothing, as in a real database. `fail_next_transaction()` injects a storage
failure for tests of the Registry's error paths.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from workstream.errors import Conflict, StorageUnavailable
from workstream.jobs.attempts import Attempt
from workstream.jobs.listing import FailureGroup, JobFilter, JobPage, Position
from workstream.jobs.model import Job, JobStatus
from workstream.store.base import Counts

PENDING = JobStatus.PENDING
PROCESSING = JobStatus.PROCESSING
FAILED = JobStatus.FAILED
COMPLETED = JobStatus.COMPLETED


class MemoryTransaction:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.staged: dict[str, Job] = {}
        self.attempts: list[Attempt] = []
        self.forget: set[str] = set()  # jobs whose attempts are deleted

    def _all(self) -> list[Job]:
        merged = dict(self._store._jobs)
        merged.update(self.staged)
        return sorted(merged.values(), key=lambda job: self._seq_of(job.id))

    def _seq_of(self, job_id: str) -> int:
        return self._store._seq.get(job_id, 1 << 62)

    def insert(self, job: Job) -> None:
        if job.id in self._store._jobs or job.id in self.staged:
            raise Conflict("a job with this id or idempotency key already exists")
        key = job.idempotency_key
        if key is not None and self.find_by_idempotency_key(key) is not None:
            raise Conflict("a job with this id or idempotency key already exists")
        self.staged[job.id] = job

    def get(self, job_id: str) -> Job | None:
        return self.staged.get(job_id) or self._store._jobs.get(job_id)

    def update(self, job: Job, expected: Job) -> bool:
        current = self.get(job.id)
        if current is None or (current.status, current.attempts, current.owner) != (
            expected.status,
            expected.attempts,
            expected.owner,
        ):
            return False
        self.staged[job.id] = job
        return True

    def lock(self, job_ids: list[str]) -> None:
        pass  # one writer at a time: nothing to lock (see base.Transaction.lock)

    def find_by_idempotency_key(self, key: str) -> Job | None:
        for job in self._all():
            if job.idempotency_key == key:
                return job
        return None

    def _ready(self, now: float) -> list[Job]:
        ready = [
            job
            for job in self._all()
            if job.status is PENDING and job.run_at is not None and job.run_at <= now
        ]
        return sorted(ready, key=lambda job: (job.run_at, self._seq_of(job.id)))

    def count_ready(self, now: float, limit: int) -> int:
        return min(limit, len(self._ready(now)))

    def claimable(self, now: float, limit: int) -> list[Job]:
        return self._ready(now)[:limit]

    def next_run_at(self, now: float) -> float | None:
        future = [
            job.run_at
            for job in self._all()
            if job.status in (PENDING, FAILED) and job.run_at is not None and job.run_at > now
        ]
        return min(future, default=None)

    def due_retries(self, now: float, limit: int) -> list[Job]:
        due = [
            job
            for job in self._all()
            if job.status is FAILED and job.run_at is not None and job.run_at <= now
        ]
        return sorted(due, key=lambda job: job.run_at or 0.0)[:limit]

    def expired_leases(self, now: float, limit: int) -> list[Job]:
        return [
            job
            for job in self._all()
            if job.status is PROCESSING
            and job.lease_expires_at is not None
            and job.lease_expires_at < now
        ][:limit]

    def processing(self, owner: str | None = None) -> list[Job]:
        return [
            job
            for job in self._all()
            if job.status is PROCESSING and (owner is None or job.owner == owner)
        ]

    def renew_leases(self, owner: str, job_ids: list[str], until: float) -> int:
        renewed = 0
        for job_id in job_ids:
            job = self.get(job_id)
            if job is not None and job.status is PROCESSING and job.owner == owner:
                self.staged[job_id] = job.replace(lease_expires_at=until)
                renewed += 1
        return renewed

    def add_attempt(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    def delete_attempts(self, job_ids: list[str]) -> int:
        wanted = set(job_ids)
        deleted = sum(1 for a in self._store._attempts if a.job_id in wanted)
        deleted += sum(1 for a in self.attempts if a.job_id in wanted)
        self.attempts = [a for a in self.attempts if a.job_id not in wanted]
        self.forget |= wanted
        return deleted


class MemoryStore:
    exclusive = True  # one process at a time (see base.Store.exclusive)

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._seq: dict[str, int] = {}
        self._attempts: list[Attempt] = []
        self._lock = threading.RLock()  # held briefly: reads and the apply of a commit
        self._writer = threading.Lock()  # one transaction at a time; readers never wait on it
        self._fail_next = 0
        self.transactions = 0
        self.opened = False
        self.closed = False

    def open(self) -> None:
        self.opened = True

    def watch(self, wake: Callable[[], None]) -> None:
        """No other process shares this store: nothing to watch."""

    def close(self) -> None:
        self.closed = True

    def fail_next_transaction(self, count: int = 1) -> None:
        """Make the next `count` transactions fail as if the disk were full."""
        self._fail_next = count

    @contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        with self._writer:
            if self._fail_next:
                self._fail_next -= 1
                raise StorageUnavailable("storage is unavailable (injected failure)")
            tx = MemoryTransaction(self)
            yield tx
            with self._lock:
                for job_id, job in tx.staged.items():
                    if job_id not in self._seq:
                        self._seq[job_id] = len(self._seq) + 1
                    self._jobs[job_id] = job
                if tx.forget:
                    self._attempts = [a for a in self._attempts if a.job_id not in tx.forget]
                self._attempts.extend(tx.attempts)
                self.transactions += 1

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _matching(self, query: JobFilter) -> builtins.list[tuple[Position, Job]]:
        """(position, job) of the jobs `query` selects, in its order."""
        with self._lock:
            rows = [((job.created_at, self._seq[job.id]), job) for job in self._jobs.values()]
        rows.sort(key=lambda row: row[0], reverse=query.newest_first)
        after = query.after
        return [
            (position, job)
            for position, job in rows
            if (after is None or (position < after if query.newest_first else position > after))
            and query.matches(job)
        ]

    def list(self, query: JobFilter) -> JobPage:
        limit, max_bytes = query.limit, query.max_bytes
        matching = self._matching(query)
        page: builtins.list[tuple[Position, Job]] = []
        size = 0
        for position, job in matching[:limit]:
            size += len(json.dumps(job.payload)) + len(json.dumps(job.result))
            if page and max_bytes is not None and size > max_bytes:
                break
            page.append((position, job))
        next_after = page[-1][0] if len(matching) > len(page) else None
        return JobPage([job for _, job in page], next_after)

    def count(self, query: JobFilter, cap: int) -> int:
        return min(cap, len(self._matching(dataclasses.replace(query, after=None))))

    def failure_groups(self, limit: int) -> builtins.list[FailureGroup]:
        with self._lock:
            failed = [job for job in self._jobs.values() if job.failed_for_good]
        groups: dict[tuple[str, str | None], builtins.list[Job]] = {}
        for job in failed:
            groups.setdefault((job.type, job.error_class), []).append(job)
        found = [
            FailureGroup(
                job_type,
                error_class,
                len(members),
                max((j.finished_at for j in members if j.finished_at is not None), default=None),
            )
            for (job_type, error_class), members in groups.items()
        ]
        found.sort(key=lambda g: (-g.count, g.job_type, g.error_class or ""))
        return found[:limit]

    def finished_per_minute(self, since: float) -> builtins.list[tuple[float, str, int]]:
        counts: dict[tuple[float, str], int] = {}
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            done = job.finished_at
            if done is None or done < since or job.status not in (COMPLETED, FAILED):
                continue
            key = (float(int(done // 60) * 60), job.status.value)
            counts[key] = counts.get(key, 0) + 1
        return [(minute, status, n) for (minute, status), n in counts.items()]

    def attempts(self, job_id: str) -> builtins.list[Attempt]:
        with self._lock:
            found = [a for a in self._attempts if a.job_id == job_id]
        return sorted(found, key=lambda a: a.number)  # stable: recorded order within a number

    def counts(self, now: float) -> Counts:
        with self._lock:
            jobs = list(self._jobs.values())
        by_status: dict[str, int] = {}
        ready = 0
        for job in jobs:
            by_status[job.status.value] = by_status.get(job.status.value, 0) + 1
            if job.status is PENDING and job.run_at is not None and job.run_at <= now:
                ready += 1
        return Counts(ready=ready, by_status=by_status)

    def ping(self) -> None:
        return None

    def all_jobs(self) -> builtins.list[Job]:  # `list` is a method here
        """Test helper: every stored job in submission order."""
        with self._lock:
            return [
                self._jobs[job_id] for job_id, _ in sorted(self._seq.items(), key=lambda p: p[1])
            ]
