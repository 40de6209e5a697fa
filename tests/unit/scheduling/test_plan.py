"""Schedules and slots with a hand-moved clock: slot computation, the catch-up policy,
timezones and daylight saving time, and the checks that stop start-up."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from workstream.errors import ConfigError
from workstream.scheduling.plan import Plan, make_schedule, schedule_from_table

PARIS = ZoneInfo("Europe/Paris")


def at(*parts: int, zone: ZoneInfo = UTC) -> float:  # type: ignore[assignment]
    return datetime(*parts, tzinfo=zone).timestamp()


def cron(expr: str, timezone: str = "UTC", name: str = "s"):
    return make_schedule(name, job_type="echo", cron=expr, timezone=timezone, source="test")


def every(seconds: str, name: str = "s"):
    return make_schedule(name, job_type="echo", every=seconds, source="test")


# -- slots --------------------------------------------------------------------------------------


def test_latest_and_next_slot_of_an_hourly_cron():
    hourly = cron("0 * * * *")
    now = at(2026, 1, 10, 14, 30, 5)
    assert hourly.latest_slot(now) == at(2026, 1, 10, 14, 0)
    assert hourly.next_slot(now) == at(2026, 1, 10, 15, 0)
    # Exactly on a slot: it is the latest, and the next is the one after.
    assert hourly.latest_slot(at(2026, 1, 10, 15, 0)) == at(2026, 1, 10, 15, 0)
    assert hourly.next_slot(at(2026, 1, 10, 15, 0)) == at(2026, 1, 10, 16, 0)
    assert hourly.expression == "0 * * * *"


def test_six_fields_have_seconds_first():
    each_second = cron("* * * * * *")
    now = at(2026, 1, 10, 14, 30, 5) + 0.7
    assert each_second.latest_slot(now) == at(2026, 1, 10, 14, 30, 5)
    assert each_second.next_slot(now) == at(2026, 1, 10, 14, 30, 6)
    assert cron("*/15 * * * * *").next_slot(now) == at(2026, 1, 10, 14, 30, 15)


def test_interval_slots_are_multiples_since_the_epoch():
    five = every("5s")
    assert five.expression == "@every 5s"
    assert five.latest_slot(1003.2) == 1000
    assert five.next_slot(1003.2) == 1005
    assert five.next_slot(1005) == 1010
    assert five.slots_between(1000, 1020, 100) == 3  # 1005, 1010, 1015


def test_a_timezone_moves_the_slots():
    nine_paris = cron("0 9 * * *", "Europe/Paris")
    assert nine_paris.next_slot(at(2026, 1, 10, 0, 0)) == at(2026, 1, 10, 8, 0)  # UTC+1
    assert nine_paris.next_slot(at(2026, 7, 10, 0, 0)) == at(2026, 7, 10, 7, 0)  # UTC+2


def test_a_slot_in_the_spring_forward_gap_fires_once_at_the_next_real_time():
    # 2026-03-29 in Paris: 02:00 -> 03:00; 02:30 does not exist that day.
    half_past_two = cron("30 2 * * *", "Europe/Paris")
    before = at(2026, 3, 28, 12, 0, zone=PARIS)
    first = half_past_two.next_slot(before)
    second = half_past_two.next_slot(first)
    third = half_past_two.next_slot(second)
    assert datetime.fromtimestamp(first, PARIS).isoformat() == "2026-03-29T03:00:00+02:00"
    assert datetime.fromtimestamp(second, PARIS).isoformat() == "2026-03-30T02:30:00+02:00"
    assert third - second == 24 * 3600


def test_a_slot_in_the_fall_back_overlap_fires_once():
    # 2026-10-25 in Paris: 03:00 -> 02:00; 02:30 happens twice, the schedule fires once.
    half_past_two = cron("30 2 * * *", "Europe/Paris")
    start = at(2026, 10, 24, 12, 0, zone=PARIS)
    slots = [half_past_two.next_slot(start)]
    for _ in range(2):
        slots.append(half_past_two.next_slot(slots[-1]))
    days = [datetime.fromtimestamp(s, PARIS).date().isoformat() for s in slots]
    assert days == ["2026-10-25", "2026-10-26", "2026-10-27"]
    plan = Plan([half_past_two], started=start)
    fired = []
    now = start
    while now < start + 3 * 86400:  # an hour at a time through the change
        for due in plan.due(now):
            fired.append(due.slot)
            plan.fired(due.schedule.name, due.slot)
        now += 900
    assert fired == slots


# -- the plan: what is due, and the catch-up policy ----------------------------------------------


def fire_all(plan: Plan, now: float) -> list[tuple[str, float, int]]:
    out = []
    for due in plan.due(now):
        out.append((due.schedule.name, due.slot, due.missed))
        plan.fired(due.schedule.name, due.slot)
    return out


def test_each_slot_is_due_once_and_not_before_its_time():
    plan = Plan([every("10s")], started=1001.0)
    assert plan.next_at() == 1010
    assert fire_all(plan, 1009.9) == []
    assert fire_all(plan, 1010.0) == [("s", 1010, 0)]
    assert fire_all(plan, 1010.5) == []  # fired: not due again
    assert fire_all(plan, 1019.9) == []
    assert fire_all(plan, 1020.3) == [("s", 1020, 0)]
    assert plan.last_fired("s") == 1020


def test_a_new_schedule_does_not_fire_for_slots_before_the_start():
    nightly = cron("0 3 * * *")
    noon = at(2026, 1, 10, 12, 0)
    plan = Plan([nightly], started=noon)
    assert fire_all(plan, noon + 60) == []
    assert plan.next_at() == at(2026, 1, 11, 3, 0)


def test_missed_slots_are_caught_up_by_one_run_for_the_latest():
    plan = Plan([every("10s")], started=5000.0)
    plan.caught_up("s", 1000.0)  # the store: slot 1000 was the last fired, then downtime
    assert plan.next_at() == 1010
    assert fire_all(plan, 5003.0) == [("s", 5000, 399)]  # 1010 .. 4990 skipped
    assert fire_all(plan, 5009.0) == []
    assert fire_all(plan, 5010.0) == [("s", 5010, 0)]


def test_a_tick_that_comes_late_fires_the_latest_slot_and_counts_the_skipped():
    plan = Plan([every("1s")], started=100.5)
    assert fire_all(plan, 101.2) == [("s", 101, 0)]
    assert fire_all(plan, 104.1) == [("s", 104, 2)]  # 102 and 103 were missed


def test_a_slot_fired_by_another_node_is_not_due_here():
    plan = Plan([every("10s")], started=1001.0)
    plan.fired("s", 1010.0)  # the submit said another node stored it
    assert fire_all(plan, 1012.0) == []
    plan.fired("s", 1000.0)  # an older slot never moves the plan back
    assert plan.last_fired("s") == 1010
    assert fire_all(plan, 1020.0) == [("s", 1020, 0)]


def test_a_failed_submission_leaves_the_slot_due():
    plan = Plan([every("10s")], started=1001.0)
    assert [d.slot for d in plan.due(1010.5)] == [1010]
    # not fired (the submission failed): due again at the next tick
    assert [d.slot for d in plan.due(1011.0)] == [1010]


def test_several_schedules_are_independent():
    plan = Plan([every("2s", name="a"), every("3s", name="b")], started=0.5)
    fired = []
    now = 0.5
    while now < 12.1:
        fired += [(name, slot) for name, slot, _ in fire_all(plan, now)]
        now += 0.5
    assert [slot for name, slot in fired if name == "a"] == [2, 4, 6, 8, 10, 12]
    assert [slot for name, slot in fired if name == "b"] == [3, 6, 9, 12]


# -- checks at start-up -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "0 3 * *"}, "invalid cron expression"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"cron": "0 3 * * *", "every": "1s"}, "give exactly one of 'cron' and 'every'"),
        ({}, "give exactly one of 'cron' and 'every'"),
        ({"every": "0.5s"}, "'every' must be whole seconds"),
        ({"every": "soon"}, "invalid 'every'"),
        ({"cron": 5}, "'cron' must be a string"),
        ({"cron": "0 3 * * *", "max_retries": -1}, "'max_retries'"),
    ],
)
def test_a_bad_schedule_names_itself_and_the_field(fields, message):
    with pytest.raises(ConfigError, match=f"schedule 'nightly' \\(here\\): {message}"):
        make_schedule("nightly", job_type="echo", source="here", **fields)


def test_a_config_table_is_checked_key_by_key():
    schedule = schedule_from_table(
        "nightly",
        {"type": "echo", "cron": "0  3 * * *", "timezone": "Europe/Paris", "payload": {"a": 1}},
        "config",
    )
    assert (schedule.job_type, schedule.cron, schedule.payload) == ("echo", "0 3 * * *", {"a": 1})
    with pytest.raises(ConfigError, match="unknown key 'crontab'"):
        schedule_from_table("nightly", {"type": "echo", "crontab": "x"}, "config")
    with pytest.raises(ConfigError, match=r"'type' .* is required"):
        schedule_from_table("nightly", {"cron": "0 3 * * *"}, "config")
