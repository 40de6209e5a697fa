"""Exponential backoff with jitter: base x 2^(n-1), +-10%, capped."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

JITTER = 0.10

# 2**64 x any sane base is far past any cap; bounding the exponent avoids float overflow.
_MAX_EXPONENT = 64


def backoff_delay(
    failed_attempt: int,
    *,
    base: float,
    cap: float,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait after failed attempt `failed_attempt` (1 = the first run failed).

    A base of 0 means "retry at once": the delay is 0.
    """
    if failed_attempt < 1:
        raise ValueError("failed_attempt starts at 1")
    if base <= 0:
        return 0.0
    raw = base * 2.0 ** min(failed_attempt - 1, _MAX_EXPONENT)
    return min(cap, raw * uniform(1.0 - JITTER, 1.0 + JITTER))


@dataclass(frozen=True)
class RetryPolicy:
    """The settings `RETRY_BACKOFF` and `RETRY_BACKOFF_MAX`, with an injectable jitter source."""

    base: float = 1.0
    cap: float = 3600.0
    uniform: Callable[[float, float], float] = random.uniform

    def delay(self, failed_attempt: int) -> float:
        return backoff_delay(failed_attempt, base=self.base, cap=self.cap, uniform=self.uniform)
