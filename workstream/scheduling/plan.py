"""Schedules and their slots, as plain objects: no threads, no clock of their own (unit
tests move time by hand).

A schedule is either a cron expression (`cronsim`: 5 fields, or 6 with seconds first),
read in an IANA timezone (`zoneinfo`), or a fixed interval (`every = "30s"`), whose slots
are the multiples of the interval since the Unix epoch. A *slot* is one of those moments,
in Unix seconds (always whole seconds).

Catch-up policy (`Plan.due`): when the scheduler looks at a schedule and one or more of
its slots have passed since the last slot fired (by any node), it fires ONE job, for the
latest passed slot; the slots in between are skipped (counted in `Due.missed`, logged).
A schedule that never fired starts with its first slot after the scheduler started:
deploying a nightly schedule at noon does not run it at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from workstream.errors import ConfigError
from workstream.jobs.limits import MAX_RETRIES_LIMIT, is_job_type
from workstream.units import parse_duration

MISSED_COUNT_LIMIT = 10_000  # missed slots are counted up to this many (for the log line)
MAX_INTERVAL = 366 * 24 * 3600.0


@dataclass(frozen=True)
class Schedule:
    """One schedule, validated. Exactly one of `cron` and `every` is set."""

    name: str
    job_type: str
    cron: str | None = None
    every: float | None = None  # seconds, whole
    timezone: str = "UTC"
    payload: Any = None
    max_retries: int | None = None
    source: str = ""  # where it was declared, for messages
    zone: ZoneInfo = field(default=ZoneInfo("UTC"), repr=False, compare=False)

    @property
    def expression(self) -> str:
        """The cron expression, or `@every <n>s` for an interval schedule."""
        if self.cron is not None:
            return self.cron
        return f"@every {self.every:.0f}s"

    def latest_slot(self, now: float) -> float:
        """The latest slot at or before `now`."""
        if self.every is not None:
            return math.floor(now / self.every) * self.every
        assert self.cron is not None
        # Reverse iteration yields moments strictly before its start: start one second on.
        start = _local(math.floor(now) + 1, self.zone)
        return next(CronSim(self.cron, start, reverse=True)).timestamp()

    def next_slot(self, now: float) -> float:
        """The first slot strictly after `now`."""
        if self.every is not None:
            return (math.floor(now / self.every) + 1) * self.every
        assert self.cron is not None
        return next(CronSim(self.cron, _local(math.floor(now), self.zone))).timestamp()

    def slots_between(self, after: float, until: float, limit: int) -> int:
        """How many slots lie strictly after `after` and strictly before `until` (counting
        no further than `limit`)."""
        if self.every is not None:
            first = math.floor(after / self.every) + 1
            last = math.ceil(until / self.every) - 1
            return max(0, min(limit, last - first + 1))
        assert self.cron is not None
        count = 0
        for moment in CronSim(self.cron, _local(math.floor(after), self.zone)):
            if moment.timestamp() >= until or count >= limit:
                break
            count += 1
        return count


def _local(at: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at, UTC).astimezone(zone)


# -- declaring schedules --------------------------------------------------------------------

TABLE_KEYS = frozenset({"type", "cron", "every", "timezone", "payload", "max_retries"})


def make_schedule(
    name: str,
    *,
    job_type: str,
    cron: Any = None,
    every: Any = None,
    timezone: Any = None,
    payload: Any = None,
    max_retries: Any = None,
    source: str,
) -> Schedule:
    """A validated schedule. Raises ConfigError naming the schedule, where it was declared
    and the bad field: the server exits 2 before anything starts."""
    where = f"schedule {name!r} ({source})"
    if not is_job_type(name):
        raise ConfigError(f"{where}: the name must be letters, digits or _.:- (at most 200)")
    if not isinstance(job_type, str) or not is_job_type(job_type):
        raise ConfigError(f"{where}: 'type' must be a job type name")
    if (cron is None) == (every is None):
        raise ConfigError(f"{where}: give exactly one of 'cron' and 'every'")
    interval: float | None = None
    if every is not None:
        interval = _interval(every, where)
    if cron is not None and not isinstance(cron, str):
        raise ConfigError(f"{where}: 'cron' must be a string like \"0 3 * * *\"")
    zone_name = "UTC" if timezone is None else timezone
    if not isinstance(zone_name, str):
        raise ConfigError(f"{where}: 'timezone' must be an IANA name like \"Europe/Paris\"")
    zone = _zone(zone_name, where)
    if max_retries is not None and (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, int)
        or not 0 <= max_retries <= MAX_RETRIES_LIMIT
    ):
        raise ConfigError(f"{where}: 'max_retries' must be a whole number from 0 to 100")
    schedule = Schedule(
        name=name,
        job_type=job_type,
        cron=None if cron is None else " ".join(cron.split()),
        every=interval,
        timezone=zone_name,
        payload=payload,
        max_retries=max_retries,
        source=source,
        zone=zone,
    )
    if schedule.cron is not None:
        try:
            CronSim(schedule.cron, datetime.now(zone))
        except CronSimError as exc:
            raise ConfigError(f"{where}: invalid cron expression {cron!r}: {exc}") from None
        try:
            schedule.next_slot(datetime.now(UTC).timestamp())
        except (CronSimError, StopIteration):
            raise ConfigError(f"{where}: cron expression {cron!r} never fires") from None
    return schedule


def _interval(every: Any, where: str) -> float:
    try:
        if isinstance(every, bool):
            raise ValueError("expected a duration")
        seconds = float(every) if isinstance(every, int | float) else parse_duration(str(every))
    except ValueError as exc:
        raise ConfigError(f"{where}: invalid 'every' {every!r}: {exc}") from None
    if not math.isfinite(seconds) or seconds < 1 or seconds != int(seconds):
        raise ConfigError(f"{where}: 'every' must be whole seconds, 1s or more")
    if seconds > MAX_INTERVAL:
        raise ConfigError(f"{where}: 'every' must be at most 366 days")
    return seconds


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f'{where}: unknown timezone {name!r} (an IANA name like "Europe/Paris" or "UTC")'
        ) from None


def schedule_from_table(name: str, table: Any, source: str) -> Schedule:
    """A `[schedules.<name>]` table of the config file."""
    where = f"schedule {name!r} ({source})"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table ([schedules.{name}])")
    unknown = sorted(set(table) - TABLE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(TABLE_KEYS))})"
        )
    if "type" not in table:
        raise ConfigError(f"{where}: 'type' (the job type to submit) is required")
    return make_schedule(
        name,
        job_type=table["type"],
        cron=table.get("cron"),
        every=table.get("every"),
        timezone=table.get("timezone"),
        payload=table.get("payload"),
        max_retries=table.get("max_retries"),
        source=source,
    )


# -- when to fire ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """Fire `schedule` for `slot`; `missed` slots before it were skipped (catch-up)."""

    schedule: Schedule
    slot: float
    missed: int


class Plan:
    """Which slot of each schedule is due, given the latest slot fired (`fired`, by any
    node, as the store says) and the moment the plan started (`started`)."""

    def __init__(self, schedules: list[Schedule], *, started: float) -> None:
        self.schedules = {schedule.name: schedule for schedule in schedules}
        self._last: dict[str, float] = {}  # latest slot fired, as far as this plan knows
        self._next: dict[str, float] = {}  # the first slot after the last one looked at
        for schedule in schedules:
            self._next[schedule.name] = schedule.next_slot(started)

    def fired(self, name: str, slot: float) -> None:
        """Slot `slot` of `name` fired (here or on another node): later slots only."""
        if name not in self.schedules or slot <= self._last.get(name, -math.inf):
            return
        self._last[name] = slot
        # The first slot after it is next, unless a later one already was.
        self._next[name] = max(self._next[name], self.schedules[name].next_slot(slot))

    def caught_up(self, name: str, last_fired: float) -> None:
        """At start: the store says `last_fired` is the latest slot fired. Slots after it
        that passed while no scheduler ran are due (one run: see `due`)."""
        schedule = self.schedules.get(name)
        if schedule is None:
            return
        self._last[name] = max(self._last.get(name, -math.inf), last_fired)
        self._next[name] = schedule.next_slot(last_fired)

    def due(self, now: float) -> list[Due]:
        """The schedules with a slot at or before `now` not yet fired: one `Due` each, for
        the latest such slot. Call `fired` once it was stored."""
        due = []
        for name, schedule in self.schedules.items():
            if self._next[name] > now:
                continue
            slot = schedule.latest_slot(now)
            missed = schedule.slots_between(self._next[name] - 1, slot, MISSED_COUNT_LIMIT)
            due.append(Due(schedule, slot, missed))
        return due

    def next_at(self) -> float | None:
        """When the next slot of any schedule is due."""
        return min(self._next.values(), default=None)

    def last_fired(self, name: str) -> float | None:
        return self._last.get(name)


def slot_time_text(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
