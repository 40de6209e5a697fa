"""Messages to a Worker."""

from __future__ import annotations

from dataclasses import dataclass

from workstream.jobs.model import Job


@dataclass(frozen=True, slots=True)
class Run:
    """To a Worker: run this claimed job, in this slot (a process Worker has one slot per
    handler thread of its child; an in-process Worker has one, slot 0)."""

    job: Job
    slot: int = 0
