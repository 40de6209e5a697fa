"""When a replacement child starts: at once after a child that lived, later and later
after children that die at once; three such deaths make a crash loop."""

from __future__ import annotations

from workstream.proc.supervision import RestartPolicy


def test_a_child_that_lived_is_replaced_at_once() -> None:
    policy = RestartPolicy()
    policy.started(100.0)
    assert policy.ended(100.0 + RestartPolicy.QUICK, planned=False) == 0.0
    assert not policy.crash_loop


def test_quick_deaths_back_off_and_make_a_crash_loop_until_one_lives() -> None:
    policy = RestartPolicy()
    delays = []
    now = 0.0
    for _ in range(8):
        policy.started(now)
        now += 0.1
        delays.append(policy.ended(now, planned=False))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.crash_loop
    policy.started(now)
    assert policy.ended(now + 10, planned=False) == 0.0
    assert not policy.crash_loop


def test_a_planned_end_is_never_backed_off() -> None:
    policy = RestartPolicy()
    policy.started(0.0)
    assert policy.ended(0.1, planned=True) == 0.0
    assert policy.quick_deaths == 0


def test_a_child_still_alive_after_quick_seconds_ends_the_loop_without_dying() -> None:
    policy = RestartPolicy()
    for start in range(3):
        policy.started(float(start))
        policy.ended(start + 0.1, planned=False)
    assert policy.crash_loop
    policy.started(10.0)
    policy.settled()  # the supervisor's timer, QUICK seconds after this child became ready
    assert not policy.crash_loop
    assert policy.ended(10.1 + RestartPolicy.QUICK, planned=False) == 0.0
