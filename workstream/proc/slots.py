"""A worker process's K slots as its supervisor books them: which are offered to the
Dispatcher, which wait for the claim their last outcome went with, which run which attempt
since when, and which have passed their timeout.
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
        # Freed slots whose next job was asked of the Registry with the outcome that freed
        # them (finish-and-claim): neither offered to the Dispatcher nor running.
        self.claiming: set[int] = set()

    @property
    def busy(self) -> int:
        return len(self.running)

    def offer(self, slot: int) -> bool:
        """Mark `slot` offered; False if it is already offered, claiming or running."""
        if slot in self.offered or slot in self.claiming or slot in self.running:
            return False
        self.offered.add(slot)
        return True

    def claim(self, slots: list[int]) -> None:
        self.claiming.update(slots)

    def claimed(self, slots: list[int]) -> list[int]:
        """Of `slots` (a claim's), those still waiting for it: not withdrawn meanwhile."""
        mine = [slot for slot in slots if slot in self.claiming]
        self.claiming.difference_update(mine)
        return mine

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
        """Every slot offered or claiming, neither any more (the child takes no new job)."""
        slots = sorted(self.offered | self.claiming)
        self.offered, self.claiming = set(), set()
        return slots

    def clear(self) -> list[tuple[int, Running]]:
        """Forget everything (the child is gone); returns what was running."""
        running = sorted(self.running.items())
        self.running, self.offered, self.claiming = {}, set(), set()
        return running
