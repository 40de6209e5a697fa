"""A worker process's K slots as its supervisor books them: which are offered to the
Dispatcher, which run which attempt since when, and which have passed their timeout.
Plain bookkeeping, so the supervising actor stays about decisions."""

from __future__ import annotations

from dataclasses import dataclass

from workstream.jobs.model import Job


@dataclass(frozen=True, slots=True)
class Running:
    job: Job
    started: float  # monotonic
    timeout: float | None


class Slots:
    def __init__(self, count: int) -> None:
        self.count = count
        self.running: dict[int, Running] = {}
        self.offered: set[int] = set()

    @property
    def busy(self) -> int:
        return len(self.running)

    def offer(self, slot: int) -> bool:
        """Mark `slot` offered; False if it is already offered or running."""
        if slot in self.offered or slot in self.running:
            return False
        self.offered.add(slot)
        return True

    def start(self, slot: int, job: Job, now: float, timeout: float | None) -> None:
        self.offered.discard(slot)
        self.running[slot] = Running(job, now, timeout)

    def done(self, slot: int, job_id: str, attempt: int) -> Running | None:
        """The attempt reported by the child, or None if it is no longer booked here (an
        attempt already given up on: timed out, released)."""
        running = self.running.get(slot)
        if running is None or (running.job.id, running.job.attempts) != (job_id, attempt):
            return None
        del self.running[slot]
        return running

    def expired(self, now: float) -> list[tuple[int, Running]]:
        return sorted(
            (slot, running)
            for slot, running in self.running.items()
            if running.timeout is not None and now - running.started >= running.timeout
        )

    def withdraw(self) -> list[int]:
        """Every offered slot, no longer offered (the child takes no new job)."""
        slots, self.offered = sorted(self.offered), set()
        return slots

    def clear(self) -> list[tuple[int, Running]]:
        """Forget everything (the child is gone); returns what was running."""
        running = sorted(self.running.items())
        self.running, self.offered = {}, set()
        return running
