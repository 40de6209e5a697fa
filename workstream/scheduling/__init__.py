"""Periodic jobs: the built-in scheduler, an extension like a user's (it uses only the
`ExtensionContext`), loaded by the server whenever a schedule is declared.

Schedules come from handlers (`@handler("report", schedule="0 * * * *",
timezone="Europe/Paris")`) and from `[schedules.<name>]` tables of the config file (a
table with a handler's type as its name replaces that handler's schedule). They are all
checked before anything starts (`load_schedules`: a bad cron expression, timezone, type or
payload stops start-up, exit 2, naming the schedule).

`Scheduling` is both the extension (its `setup` starts the `Scheduler` actor and its tick)
and the `ScheduleProvider` the HTTP app serves as `GET /schedules` and
`POST /schedules/{name}/run`. See docs/scheduling.md, "Periodic jobs".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pykka

from workstream.config import Settings
from workstream.errors import ConfigError, NotFound, WorkStreamError
from workstream.extensions import ExtensionContext
from workstream.handlers import HandlerTable
from workstream.jobs.schedules import ScheduleState, manual_key
from workstream.jobs.service import JobService
from workstream.jobs.spec import JobSpec
from workstream.scheduling.actor import Scheduler, Tick
from workstream.scheduling.plan import Plan, Schedule, make_schedule, schedule_from_table
from workstream.units import shorten

__all__ = ["EXTENSION_NAME", "Scheduling", "load_schedules"]

EXTENSION_NAME = "schedules"  # its config section: [schedules.<name>]
TICK_SECONDS = 0.5  # how often due slots are looked for (slots are whole seconds)
EVERY_PREFIX = "@every "


def load_schedules(settings: Settings, handlers: HandlerTable) -> list[Schedule]:
    """Every declared schedule, checked. Raises ConfigError naming the bad one."""
    found: dict[str, Schedule] = {}
    for item in handlers.scheduled():
        expression = (item.schedule or "").strip()
        every = expression[len(EVERY_PREFIX) :] if expression.startswith(EVERY_PREFIX) else None
        found[item.type] = make_schedule(
            item.type,
            job_type=item.type,
            cron=None if every is not None else expression,
            every=every,
            timezone=item.timezone,
            payload=item.schedule_payload,
            source=f"@handler({item.type!r})",
        )
    tables = settings.config_tables.get(EXTENSION_NAME, {})
    for name, table in tables.items():
        found[name] = schedule_from_table(
            name, table, f"[{EXTENSION_NAME}.{name}] in {settings.config_path}"
        )
    for schedule in found.values():
        try:
            handlers.check_submission(schedule.job_type, schedule.payload)
        except WorkStreamError as exc:
            raise ConfigError(
                f"schedule {schedule.name!r} ({schedule.source}): {exc.message}"
            ) from None
    return [found[name] for name in sorted(found)]


class Scheduling:
    """The built-in scheduler extension, and the `ScheduleProvider` of the HTTP app."""

    def __init__(
        self, schedules: list[Schedule], *, jobs: JobService, clock: Callable[[], float]
    ) -> None:
        self.defined = {schedule.name: schedule for schedule in schedules}
        self._jobs = jobs
        self._clock = clock
        self.scheduler: pykka.ActorRef[Any] | None = None

    # -- the extension ----------------------------------------------------------------------

    def setup(self, context: ExtensionContext) -> list[pykka.ActorRef[Any]]:
        context.section()  # read (and checked) by load_schedules
        if not self.defined:
            return []
        plan = Plan(list(self.defined.values()), started=context.clock())
        scheduler = Scheduler.start(
            plan=plan, jobs=context.jobs, clock=context.clock, log=context.log
        )
        context.every(TICK_SECONDS, scheduler, Tick())
        self.scheduler = scheduler
        return [scheduler]

    # -- the provider (any thread) --------------------------------------------------------------

    def schedules(self) -> list[ScheduleState]:
        if not self.defined:
            return []
        fired = {record.name: record for record in self._jobs.fired_slots()}
        now = self._clock()
        states = []
        for name, schedule in sorted(self.defined.items()):
            record = fired.get(name)
            states.append(
                ScheduleState(
                    name=name,
                    job_type=schedule.job_type,
                    cron=schedule.expression,
                    timezone=schedule.timezone,
                    next_run_at=schedule.next_slot(now),
                    last_run_at=None if record is None else record.fired_at,
                    last_job_id=None if record is None else record.job_id,
                )
            )
        return states

    def run_schedule(self, name: str) -> str:
        schedule = self.defined.get(name)
        if schedule is None:
            known = ", ".join(sorted(self.defined)) or "none"
            raise NotFound(f"no schedule named {shorten(name)!r} (known: {shorten(known)})")
        spec = JobSpec(
            type=schedule.job_type, payload=schedule.payload, max_retries=schedule.max_retries
        )
        submission = self._jobs.submit([spec], idempotency_key=manual_key(name, uuid.uuid4().hex))
        return submission.jobs[0].id
