"""Periodic jobs, as the domain sees them: a fired slot, the state of one schedule, and the
port through which the HTTP layer (and the web console) reads schedules and runs one now.

The scheduler itself (cron parsing, timezones, the actor) is `workstream.scheduling`; the
store keeps one row per schedule with the last slot it fired (`FiredSlot`), written in the
transaction that creates the slot's job (see docs/scheduling.md, "Periodic jobs").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from workstream.units import format_time

SLOT_KEY_PREFIX = "schedule:"


@dataclass(frozen=True, slots=True)
class ScheduleSlot:
    """One slot of a schedule: the job made for it carries the unique key `slot_key`."""

    name: str
    at: float  # Unix seconds: the slot's time (whole seconds)

    @property
    def key(self) -> str:
        return slot_key(self.name, self.at)


def slot_key(name: str, at: float) -> str:
    """The idempotency key of the job made for slot `at` of schedule `name`."""
    return f"{SLOT_KEY_PREFIX}{name}:{at:.0f}"


def manual_key(name: str, token: str) -> str:
    """The idempotency key of a manual run (`POST /schedules/{name}/run`): never a slot's."""
    return f"{SLOT_KEY_PREFIX}{name}:manual:{token}"


@dataclass(frozen=True, slots=True)
class FiredSlot:
    """What the store remembers of a schedule: the latest slot fired, by any node."""

    name: str
    slot: float
    job_id: str | None
    fired_at: float


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """One schedule as `GET /schedules` shows it. Times are Unix seconds (None: never /
    no next run)."""

    name: str
    job_type: str
    cron: str
    timezone: str
    next_run_at: float | None
    last_run_at: float | None
    last_job_id: str | None

    def to_public(self) -> dict[str, Any]:
        """As `GET /schedules` shows it (times in RFC 3339, UTC)."""
        return {
            "name": self.name,
            "type": self.job_type,
            "cron": self.cron,
            "timezone": self.timezone,
            "next_run_at": format_time(self.next_run_at),
            "last_run_at": format_time(self.last_run_at),
            "last_job_id": self.last_job_id,
        }


class ScheduleProvider(Protocol):
    """The scheduler's view, handed to the HTTP app (and the web console)."""

    def schedules(self) -> list[ScheduleState]: ...

    def run_schedule(self, name: str) -> str:
        """Submit one job of schedule `name` now (a manual run: its own key, not a slot);
        returns the job's id. Raises NotFound for an unknown name, and the submission's
        errors (QueueFull, ShuttingDown, ...)."""
