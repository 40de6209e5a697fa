"""The Scheduler actor: on each tick, submits one job for each schedule with a due slot.

A thin shell around `Plan`: ticks in, `JobService.submit(..., slot=...)` out. The slot is
recorded in the transaction that stores its job, and a slot any node already fired stores
nothing, so every node may run a Scheduler: each slot fires exactly once. A submission that
fails (queue full, storage down, shutting down) leaves the slot due: the next tick tries
again (the same slot, or a later one if it passed meanwhile).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from workstream.errors import ShuttingDown, WorkStreamError
from workstream.jobs.schedules import ScheduleSlot
from workstream.jobs.service import JobService
from workstream.jobs.spec import JobSpec
from workstream.scheduling.plan import Due, Plan, slot_time_text


@dataclass(frozen=True, slots=True)
class Tick:
    """Look for due slots now."""


class Scheduler(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        *,
        plan: Plan,
        jobs: JobService,
        clock: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        super().__init__()
        self._plan = plan
        self._jobs = jobs
        self._clock = clock
        self._log = log
        self.fired = 0  # slots this node fired (others may have fired the rest)
        self._loaded = False  # the store's fired slots were read
        self._warned: dict[str, float] = {}  # schedule -> the slot whose failure was logged

    def on_start(self) -> None:
        self._load_fired()

    def _load_fired(self) -> bool:
        """What the store says was fired, by any node; False if it cannot be read now."""
        try:
            fired = self._jobs.fired_slots()
        except WorkStreamError as exc:
            self._log.warning(
                "cannot read the schedules' fired slots: %s",
                exc,
                extra={"event": "schedule_state_unavailable"},
            )
            return False
        for record in fired:
            self._plan.caught_up(record.name, record.slot)
        self._loaded = True
        return True

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Tick):
            self.tick()
        return None

    def tick(self) -> None:
        if not self._loaded and not self._load_fired():
            return
        for due in self._plan.due(self._clock()):
            self._fire(due)

    def _fire(self, due: Due) -> None:
        schedule = due.schedule
        slot = ScheduleSlot(schedule.name, due.slot)
        spec = JobSpec(
            type=schedule.job_type, payload=schedule.payload, max_retries=schedule.max_retries
        )
        try:
            submission = self._jobs.submit([spec], idempotency_key=slot.key, slot=slot)
        except ShuttingDown:
            return  # the extensions stop once the drain is over: nothing to fire now
        except WorkStreamError as exc:
            if self._warned.get(schedule.name) == due.slot:
                return  # said once per slot: the next tick tries again quietly
            self._warned[schedule.name] = due.slot
            self._log.warning(
                "schedule %s: slot %s not fired yet (trying again): %s",
                schedule.name,
                slot_time_text(due.slot),
                exc,
                extra={
                    "event": "schedule_fire_failed",
                    "schedule": schedule.name,
                    "slot": slot_time_text(due.slot),
                    "error": str(exc),
                },
            )
            return
        self._plan.fired(schedule.name, due.slot)
        if not submission.created:
            return  # another node fired it first
        self.fired += 1
        fields: dict[str, Any] = {
            "event": "schedule_fired",
            "schedule": schedule.name,
            "slot": slot_time_text(due.slot),
            "job_id": submission.jobs[0].id if submission.jobs else None,
            "type": schedule.job_type,
        }
        if due.missed:
            fields["missed"] = due.missed
            self._log.info(
                "schedule %s fired for %s, catching up %d missed slots in this one run",
                schedule.name,
                slot_time_text(due.slot),
                due.missed,
                extra=fields,
            )
        else:
            self._log.info(
                "schedule %s fired for %s", schedule.name, slot_time_text(due.slot), extra=fields
            )
