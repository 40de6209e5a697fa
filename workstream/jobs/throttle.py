"""Which due jobs a claim starts, given priorities, aging, pauses and per-type limits.

Plain code over plain values, so that each rule is unit-tested with numbers; the ledger
feeds it what the store answered inside the claim transaction (the types with pending
jobs, the types' stored controls, the running jobs of limited types and, per type, the
candidates in claim order) and writes what it chose.

Order: a job's *effective priority* is its priority, or the highest (0) once it has waited
longer than the aging period since it became due; due jobs start by effective priority,
then oldest `run_at` first (then submission order, which the store keeps within a type).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from workstream.jobs.model import Job
from workstream.jobs.types import PRIORITY_HIGHEST, TypeControl, TypeLimits

# A keyed type fetches more candidates than it may start, so that jobs of other keys are
# found behind a key that is at its limit (bounded: see docs/scheduling.md).
KEYED_FETCH_FACTOR = 8
KEYED_FETCH_MIN = 64
KEYED_FETCH_MAX = 500

_NO_LIMITS = TypeLimits()


@dataclass
class Plan:
    """What one claim may take per type, and when a type held back becomes startable."""

    quotas: dict[str, int] = field(default_factory=dict)
    # Types whose quota is what their rate window has left: its end, if they use it up.
    capped: dict[str, float] = field(default_factory=dict)
    wake_at: float | None = None
    held: bool = False  # some type has due work held back by a limit (not a pause)

    def wake(self, when: float) -> None:
        self.wake_at = when if self.wake_at is None else min(self.wake_at, when)


class Throttle:
    """The scheduling policy of one node (every node has the same one: the handlers and
    the config file are the same). `aging` 0 disables aging."""

    def __init__(self, limits: Mapping[str, TypeLimits] | None = None, aging: float = 0.0):
        self._limits = {name: item for name, item in (limits or {}).items() if item.gated}
        self.aging = aging

    def limits(self, job_type: str) -> TypeLimits:
        return self._limits.get(job_type, _NO_LIMITS)

    def gated(self, types: Iterable[str]) -> list[str]:
        """The types among `types` whose starts are counted, sorted (the lock order)."""
        return sorted(name for name in set(types) if name in self._limits)

    def aged_before(self, now: float) -> float | None:
        """Jobs due at or before this time count as top priority (None: no aging)."""
        return now - self.aging if self.aging > 0 else None

    def effective_priority(self, job: Job, now: float) -> int:
        aged = self.aged_before(now)
        if aged is not None and job.run_at is not None and job.run_at <= aged:
            return PRIORITY_HIGHEST
        return job.priority

    def plan(
        self, *, limit: int, now: float, types: Iterable[str], controls: Mapping[str, TypeControl]
    ) -> Plan:
        """How many candidates to fetch of each type with pending jobs."""
        plan = Plan()
        for name in types:
            control = controls.get(name)
            if control is not None and control.paused:
                continue  # resuming wakes the dispatchers
            if control is not None and control.blocked_until and control.blocked_until > now:
                plan.wake(control.blocked_until)
                plan.held = True
                continue
            quota = limit
            rate = self.limits(name).rate_limit
            if rate is not None:
                left = (control or TypeControl(name)).starts_left(rate, now)
                if left <= 0:
                    plan.wake(rate.window_start(now) + rate.period)
                    plan.held = True
                    continue
                if left < quota:
                    plan.capped[name] = rate.window_start(now) + rate.period
                    quota = left
            plan.quotas[name] = quota
        return plan

    def fetch_size(self, job_type: str, quota: int, running: list[Job] | int = 0) -> int:
        """How many candidates of a type to read: its quota, and no more than one past its
        free slots (one for a type at its limit, however long its backlog); for a keyed
        type a window wide enough to find other keys behind one at its limit."""
        limits = self.limits(job_type)
        if limits.concurrency_key is not None:
            return max(KEYED_FETCH_MIN, min(KEYED_FETCH_MAX, quota * KEYED_FETCH_FACTOR))
        if limits.max_concurrency is not None and isinstance(running, int):
            # One more than the free slots: whether a due job is left behind shows.
            return min(quota, max(0, limits.max_concurrency - running) + 1)
        return quota

    def choose(
        self,
        *,
        limit: int,
        now: float,
        plan: Plan,
        candidates: Mapping[str, list[Job]],
        running: Mapping[str, list[Job] | int],
    ) -> list[Job]:
        """The jobs to start: per type within its quota and concurrency limit (`running`:
        per limited type, its processing jobs, or their number when it has no key; per key:
        the key with the fewest running goes next, so keys share fairly), then the best
        `limit` of them in claim order. Marks `plan.held` if a limit kept a due job back."""
        chosen: list[Job] = []
        for name, jobs in candidates.items():
            quota = plan.quotas.get(name, 0)
            limits = self.limits(name)
            if limits.max_concurrency is None:
                picked = jobs[:quota]
            elif limits.concurrency_key is None:
                held = running.get(name, 0)
                count = held if isinstance(held, int) else len(held)
                free = max(0, limits.max_concurrency - count)
                picked = jobs[: min(quota, free)]
            else:
                held = running.get(name, [])
                picked = self._fair(limits, quota, jobs, held if isinstance(held, list) else [])
            if len(picked) < len(jobs) and len(picked) < quota:
                plan.held = True
            if name in plan.capped and len(picked) >= quota:
                plan.held = True  # the window is used up: more may wait for the next one
                plan.wake(plan.capped[name])
            chosen.extend(picked)
        chosen.sort(
            key=lambda job: (self.effective_priority(job, now), job.run_at or 0.0, job.created_at)
        )
        return chosen[:limit]

    @staticmethod
    def _fair(limits: TypeLimits, quota: int, jobs: list[Job], running: Iterable[Job]) -> list[Job]:
        """Up to `quota` of `jobs` (in claim order), at most max_concurrency per key
        counting those running; each next job goes to the key with the fewest in flight
        (ties: the key whose best job comes first)."""
        assert limits.max_concurrency is not None
        in_flight: dict[str | None, int] = {}
        for job in running:
            key = limits.key_of(job.payload)
            in_flight[key] = in_flight.get(key, 0) + 1
        queues: dict[str | None, list[Job]] = {}
        for job in jobs:
            queues.setdefault(limits.key_of(job.payload), []).append(job)
        order = {key: index for index, key in enumerate(queues)}
        heads = dict.fromkeys(queues, 0)
        picked: list[Job] = []
        while len(picked) < quota:
            open_keys = [
                key
                for key in queues
                if heads[key] < len(queues[key]) and in_flight.get(key, 0) < limits.max_concurrency
            ]
            if not open_keys:
                break
            key = min(open_keys, key=lambda k: (in_flight.get(k, 0), order[k]))
            picked.append(queues[key][heads[key]])
            heads[key] += 1
            in_flight[key] = in_flight.get(key, 0) + 1
        return picked
