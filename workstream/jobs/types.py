"""Job types as units of scheduling: their limits, their stored controls, their state.

`TypeLimits` is what a handler registration (`@handler(..., max_concurrency=5,
concurrency_key="tenant", rate_limit="10/s")`) or the `[types.<name>]` table of the config
file asks of a type. `TypeControl` is the durable per-type row every node shares (paused,
held back until, the current rate window). `TypeState` is what `GET /types` shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workstream.units import format_time

# Priorities (Oban's convention): 0 starts first, 9 last; a job without one gets 5.
PRIORITY_HIGHEST = 0
PRIORITY_LOWEST = 9
PRIORITY_DEFAULT = 5

MAX_CONCURRENCY_LIMIT = 100_000
MAX_RATE_COUNT = 1_000_000

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_PERIOD_WORDS = {"second": "s", "sec": "s", "minute": "m", "min": "m", "hour": "h"}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `count` starts per `period` seconds (fixed windows aligned on the epoch)."""

    count: int
    period: float
    text: str

    def window_start(self, now: float) -> float:
        return (now // self.period) * self.period


def parse_rate_limit(raw: Any) -> RateLimit:
    """`"10/s"`, `"100/m"`, `"5000/h"` (also `/second`, `/minute`, `/hour`). ValueError
    with a message otherwise."""
    if not isinstance(raw, str):
        raise ValueError("must be text like '10/s', '100/m' or '5000/h'")
    found = _RATE.match(raw.lower())
    unit = None
    if found:
        word = found.group(2)
        unit = word if word in _PERIODS else _PERIOD_WORDS.get(word.removesuffix("s"))
    if found is None or unit is None:
        raise ValueError(f"{raw!r} is not a rate like '10/s', '100/m' or '5000/h'")
    count = int(found.group(1))
    if not 1 <= count <= MAX_RATE_COUNT:
        raise ValueError(f"{raw!r}: the count must be from 1 to {MAX_RATE_COUNT}")
    return RateLimit(count, _PERIODS[unit], f"{count}/{unit}")


def check_max_concurrency(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError("must be a whole number")
    if not 1 <= raw <= MAX_CONCURRENCY_LIMIT:
        raise ValueError(f"must be from 1 to {MAX_CONCURRENCY_LIMIT}")
    return raw


def check_concurrency_key(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 200:
        raise ValueError("must be the name of a payload field (non-empty text)")
    return raw


@dataclass(frozen=True, slots=True)
class TypeLimits:
    """What limits a type's starts. `max_concurrency` with `concurrency_key` limits each
    value of that payload field separately (jobs whose payload lacks it share one group)."""

    max_concurrency: int | None = None
    concurrency_key: str | None = None
    rate_limit: RateLimit | None = None

    @property
    def gated(self) -> bool:
        """Starts of this type must be counted (every node serialises its claims of it)."""
        return self.max_concurrency is not None or self.rate_limit is not None

    def key_of(self, payload: Any) -> str | None:
        """The concurrency group of a job with `payload` (None: the type's only group)."""
        if self.concurrency_key is None:
            return None
        value = payload.get(self.concurrency_key) if isinstance(payload, dict) else None
        return None if value is None else repr(value) if not isinstance(value, str) else value

    @classmethod
    def build(
        cls,
        *,
        max_concurrency: int | None = None,
        concurrency_key: str | None = None,
        rate_limit: str | RateLimit | None = None,
    ) -> TypeLimits:
        """Checked limits; ValueError naming the bad one."""
        try:
            limit = None if max_concurrency is None else check_max_concurrency(max_concurrency)
        except ValueError as exc:
            raise ValueError(f"max_concurrency {exc}") from None
        try:
            key = None if concurrency_key is None else check_concurrency_key(concurrency_key)
        except ValueError as exc:
            raise ValueError(f"concurrency_key {exc}") from None
        if key is not None and limit is None:
            raise ValueError("concurrency_key needs max_concurrency")
        try:
            rate = (
                rate_limit
                if isinstance(rate_limit, RateLimit | None)
                else parse_rate_limit(rate_limit)
            )
        except ValueError as exc:
            raise ValueError(f"rate_limit {exc}") from None
        return cls(limit, key, rate)

    def merged(self, table: Mapping[str, Any]) -> TypeLimits:
        """These limits with the settings of a `[types.<name>]` table over them."""
        return TypeLimits.build(
            max_concurrency=table.get("max_concurrency", self.max_concurrency),
            concurrency_key=table.get("concurrency_key", self.concurrency_key),
            rate_limit=table.get("rate_limit", self.rate_limit),
        )


TYPE_TABLE_KEYS = frozenset({"max_concurrency", "concurrency_key", "rate_limit"})


@dataclass(frozen=True, slots=True)
class TypeControl:
    """A type's stored row, shared by every node. `blocked_until`: no start before (a
    handler raised RateLimited). `window_start`/`window_count`: starts counted in the
    current rate window."""

    name: str
    paused: bool = False
    blocked_until: float | None = None
    window_start: float | None = None
    window_count: int = 0

    def starts_left(self, rate: RateLimit, now: float) -> int:
        if self.window_start is None or self.window_start != rate.window_start(now):
            return rate.count
        return max(0, rate.count - self.window_count)


@dataclass(frozen=True)
class TypeState:
    """A job type as `GET /types` shows it."""

    name: str
    paused: bool
    max_concurrency: int | None
    concurrency_key: str | None
    rate_limit: str | None
    running: int
    counts: dict[str, int] = field(default_factory=dict)
    blocked_until: float | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paused": self.paused,
            "max_concurrency": self.max_concurrency,
            "concurrency_key": self.concurrency_key,
            "rate_limit": self.rate_limit,
            "running": self.running,
            "counts": dict(self.counts),
            "blocked_until": format_time(self.blocked_until),
        }
