"""The scheduling policy as plain code: rates, limits, plans, fair per-key choice, aging."""

from __future__ import annotations

import pytest

from tests.support import T0, make_job
from workstream.jobs.deferral import RateLimited, Snooze
from workstream.jobs.model import JobStatus
from workstream.jobs.throttle import Throttle
from workstream.jobs.types import RateLimit, TypeControl, TypeLimits, parse_rate_limit


@pytest.mark.parametrize(
    ("text", "count", "period", "shown"),
    [
        ("10/s", 10, 1.0, "10/s"),
        ("100/m", 100, 60.0, "100/m"),
        ("5000/h", 5000, 3600.0, "5000/h"),
        ("3 / second", 3, 1.0, "3/s"),
        ("7/minutes", 7, 60.0, "7/m"),
        ("1/HOUR", 1, 3600.0, "1/h"),
    ],
)
def test_rates_parse(text, count, period, shown):
    assert parse_rate_limit(text) == RateLimit(count, period, shown)


@pytest.mark.parametrize("text", ["", "10", "10/d", "0/s", "-1/s", "x/s", 10, None, "1e3/s"])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError):
        parse_rate_limit(text)


def test_limits_are_checked_and_named():
    with pytest.raises(ValueError, match="max_concurrency"):
        TypeLimits.build(max_concurrency=0)
    with pytest.raises(ValueError, match="max_concurrency"):
        TypeLimits.build(max_concurrency=True)
    with pytest.raises(ValueError, match="concurrency_key needs max_concurrency"):
        TypeLimits.build(concurrency_key="tenant")
    with pytest.raises(ValueError, match="rate_limit"):
        TypeLimits.build(rate_limit="lots")
    assert not TypeLimits().gated
    assert TypeLimits.build(rate_limit="1/s").gated


def test_a_config_table_overrides_the_registration():
    base = TypeLimits.build(max_concurrency=5, concurrency_key="tenant")
    merged = base.merged({"max_concurrency": 2, "rate_limit": "10/m"})
    assert (merged.max_concurrency, merged.concurrency_key) == (2, "tenant")
    assert merged.rate_limit == RateLimit(10, 60.0, "10/m")


def test_key_of_reads_the_payload_field():
    limits = TypeLimits.build(max_concurrency=1, concurrency_key="tenant")
    assert limits.key_of({"tenant": "acme"}) == "acme"
    assert limits.key_of({"tenant": 7}) == "7"
    assert limits.key_of({"other": 1}) is None
    assert limits.key_of(["not", "a", "dict"]) is None


def test_rate_windows_are_fixed_and_aligned():
    rate = parse_rate_limit("10/m")
    assert rate.window_start(120.5) == 120.0
    control = TypeControl("t", window_start=120.0, window_count=7)
    assert control.starts_left(rate, 150.0) == 3
    assert control.starts_left(rate, 180.0) == 10  # a new window
    assert TypeControl("t", window_start=120.0, window_count=12).starts_left(rate, 130) == 0


def test_snooze_values():
    assert Snooze(2).seconds == 2.0 and not Snooze(2).holds_type
    assert RateLimited(3.5).retry_after == 3.5 and RateLimited(1).holds_type
    with pytest.raises(ValueError):
        Snooze(-1)
    with pytest.raises(TypeError):
        Snooze("soon")  # type: ignore[arg-type]


THROTTLE = Throttle(
    {
        "one": TypeLimits.build(max_concurrency=1),
        "keyed": TypeLimits.build(max_concurrency=2, concurrency_key="tenant"),
        "rated": TypeLimits.build(rate_limit="3/s"),
        "free": TypeLimits(),
    },
    aging=300.0,
)


def test_only_limited_types_are_gated():
    assert THROTTLE.gated(["free", "rated", "one", "echo", "keyed"]) == ["keyed", "one", "rated"]


def test_plan_skips_paused_and_held_types_and_caps_rates():
    controls = {
        "paused": TypeControl("paused", paused=True),
        "held": TypeControl("held", blocked_until=T0 + 4),
        "rated": TypeControl("rated", window_start=T0 // 1, window_count=1),
    }
    plan = THROTTLE.plan(
        limit=10, now=T0 + 0.5, types=["paused", "held", "rated", "echo"], controls=controls
    )
    assert plan.quotas == {"rated": 2, "echo": 10}
    assert plan.wake_at == T0 + 4 and plan.held


def test_an_exhausted_rate_wakes_at_the_windows_end():
    controls = {"rated": TypeControl("rated", window_start=T0, window_count=3)}
    plan = THROTTLE.plan(limit=10, now=T0 + 0.25, types=["rated"], controls=controls)
    assert plan.quotas == {} and plan.wake_at == T0 + 1 and plan.held


def test_choose_respects_a_concurrency_limit_counting_running_jobs():
    jobs = [make_job(f"j{n}", job_type="one") for n in range(3)]
    plan = THROTTLE.plan(limit=10, now=T0, types=["one"], controls={})
    assert (
        THROTTLE.choose(limit=10, now=T0, plan=plan, candidates={"one": jobs}, running={"one": []})
        == jobs[:1]
    )
    running = [make_job("r", job_type="one", status=JobStatus.PROCESSING)]
    assert (
        THROTTLE.choose(
            limit=10, now=T0, plan=plan, candidates={"one": jobs}, running={"one": running}
        )
        == []
    )
    assert plan.held


def _keyed(job_id: str, tenant: str, status: JobStatus = JobStatus.PENDING):
    return make_job(job_id, job_type="keyed", payload={"tenant": tenant}, status=status)


def test_keys_share_fairly_and_each_keeps_its_limit():
    # Tenant a submitted a lot first; b and c came later: one each before a's second.
    candidates = [_keyed(f"a{n}", "a") for n in range(5)]
    candidates += [_keyed("b0", "b"), _keyed("c0", "c"), _keyed("c1", "c")]
    plan = THROTTLE.plan(limit=10, now=T0, types=["keyed"], controls={})
    chosen = THROTTLE.choose(
        limit=10, now=T0, plan=plan, candidates={"keyed": candidates}, running={}
    )
    assert sorted(job.id for job in chosen) == ["a0", "a1", "b0", "c0", "c1"]
    # With a at its limit, a's backlog does not hide b.
    running = [_keyed("ra0", "a", JobStatus.PROCESSING), _keyed("ra1", "a", JobStatus.PROCESSING)]
    chosen = THROTTLE.choose(
        limit=10, now=T0, plan=plan, candidates={"keyed": candidates}, running={"keyed": running}
    )
    assert sorted(job.id for job in chosen) == ["b0", "c0", "c1"]


def test_a_small_quota_goes_to_the_key_with_fewest_running():
    candidates = [_keyed("a0", "a"), _keyed("a1", "a"), _keyed("b0", "b")]
    running = [_keyed("ra", "a", JobStatus.PROCESSING)]
    plan = THROTTLE.plan(limit=1, now=T0, types=["keyed"], controls={})
    chosen = THROTTLE.choose(
        limit=1, now=T0, plan=plan, candidates={"keyed": candidates}, running={"keyed": running}
    )
    assert [job.id for job in chosen] == ["b0"]


def test_choose_orders_across_types_by_effective_priority_then_age():
    urgent = make_job("urgent", job_type="free", priority=0, run_at=T0 - 1)
    normal = make_job("normal", priority=5, run_at=T0 - 50)
    aged = make_job("aged", priority=9, run_at=T0 - 301)
    plan = THROTTLE.plan(limit=2, now=T0, types=["free", "echo"], controls={})
    chosen = THROTTLE.choose(
        limit=2,
        now=T0,
        plan=plan,
        candidates={"free": [urgent], "echo": [aged, normal]},
        running={},
    )
    assert [job.id for job in chosen] == ["aged", "urgent"]


def test_without_aging_priority_alone_decides():
    plain = Throttle(aging=0.0)
    old_low = make_job("old", priority=9, run_at=T0 - 10_000)
    assert plain.aged_before(T0) is None
    assert plain.effective_priority(old_low, T0) == 9


def test_a_type_at_its_limit_reads_one_candidate_however_long_its_backlog():
    assert THROTTLE.fetch_size("one", 10, 1) == 1  # at its limit: one, to see one waits
    assert THROTTLE.fetch_size("one", 10, 0) == 2  # one free slot, and one to see more
    assert THROTTLE.fetch_size("free", 10) == 10
    assert THROTTLE.fetch_size("keyed", 2, []) == 64  # a window to find other keys
