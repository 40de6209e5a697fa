"""Retry backoff (workstream/jobs/retry.py): base x 2^(n-1), +-10% jitter, capped."""

from __future__ import annotations

import math
import random

import pytest

from workstream.jobs.retry import JITTER, RetryPolicy, backoff_delay


class FixedUniform:
    """A stand-in for random.uniform: returns `value` and records the bounds it was given."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.calls: list[tuple[float, float]] = []

    def __call__(self, low: float, high: float) -> float:
        self.calls.append((low, high))
        return self.value


@pytest.mark.parametrize(
    ("failed_attempt", "expected"),
    [(1, 3.0), (2, 6.0), (3, 12.0), (4, 24.0), (10, 3.0 * 512)],
)
def test_delay_doubles_with_each_failed_attempt(failed_attempt, expected):
    uniform = FixedUniform(1.0)
    assert backoff_delay(failed_attempt, base=3.0, cap=1e9, uniform=uniform) == expected


def test_jitter_is_drawn_from_plus_minus_ten_percent():
    uniform = FixedUniform(1.0)
    backoff_delay(2, base=1.0, cap=100.0, uniform=uniform)
    assert uniform.calls == [(pytest.approx(1 - JITTER), pytest.approx(1 + JITTER))]
    assert pytest.approx(0.10) == JITTER


@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1])
def test_jitter_factor_multiplies_the_raw_delay(factor):
    assert backoff_delay(3, base=2.0, cap=1e9, uniform=FixedUniform(factor)) == 8.0 * factor


def test_real_jitter_stays_within_ten_percent():
    rng = random.Random(20261129)
    seen = set()
    for failed_attempt in range(1, 9):
        raw = 0.5 * 2 ** (failed_attempt - 1)
        for _ in range(200):
            delay = backoff_delay(failed_attempt, base=0.5, cap=1e9, uniform=rng.uniform)
            assert raw * 0.9 - 1e-12 <= delay <= raw * 1.1 + 1e-12
            seen.add(delay)
    assert len(seen) > 100  # it really is jittered


def test_default_uniform_is_random_and_within_bounds():
    delays = {backoff_delay(1, base=10.0, cap=1e9) for _ in range(200)}
    assert all(9.0 <= delay <= 11.0 for delay in delays)
    assert len(delays) > 1


def test_delay_is_capped():
    assert backoff_delay(20, base=1.0, cap=60.0, uniform=FixedUniform(1.0)) == 60.0


def test_jitter_never_pushes_past_the_cap():
    # raw 64 x 1.1 = 70.4 > cap 70
    assert backoff_delay(7, base=1.0, cap=70.0, uniform=FixedUniform(1.1)) == 70.0
    for _ in range(100):
        assert backoff_delay(7, base=1.0, cap=70.0) <= 70.0


@pytest.mark.parametrize("failed_attempt", [1, 2, 50, 10**9])
def test_base_zero_means_no_delay(failed_attempt):
    assert backoff_delay(failed_attempt, base=0.0, cap=60.0, uniform=FixedUniform(1.1)) == 0.0


def test_negative_base_means_no_delay():
    assert backoff_delay(3, base=-5.0, cap=60.0) == 0.0


@pytest.mark.parametrize("failed_attempt", [64, 65, 1_025, 10**6, 10**18, 2**200])
def test_huge_attempt_numbers_do_not_overflow(failed_attempt):
    delay = backoff_delay(failed_attempt, base=1.0, cap=3600.0, uniform=FixedUniform(1.1))
    assert delay == 3600.0
    assert math.isfinite(delay)


def test_huge_base_and_attempts_still_give_the_cap():
    assert backoff_delay(10**6, base=1e300, cap=3600.0) == 3600.0


@pytest.mark.parametrize("failed_attempt", [0, -1, -(10**9)])
def test_failed_attempt_starts_at_one(failed_attempt):
    with pytest.raises(ValueError, match="starts at 1"):
        backoff_delay(failed_attempt, base=1.0, cap=60.0)


def test_policy_delegates_with_its_settings():
    uniform = FixedUniform(1.0)
    policy = RetryPolicy(base=3.0, cap=20.0, uniform=uniform)
    assert policy.delay(1) == 3.0
    assert policy.delay(3) == 12.0
    assert policy.delay(4) == 20.0
    assert len(uniform.calls) == 3


def test_policy_defaults():
    policy = RetryPolicy()
    assert (policy.base, policy.cap) == (1.0, 3600.0)
    assert 0.9 <= policy.delay(1) <= 1.1
