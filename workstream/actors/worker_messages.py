"""Messages to a Worker."""

from __future__ import annotations

from dataclasses import dataclass

from workstream.jobs.model import Job


@dataclass(frozen=True, slots=True)
class Run:
    """To a Worker: run this claimed job."""

    job: Job
