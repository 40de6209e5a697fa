"""The EventBus: listeners get what they subscribed to, and a broken one harms nobody."""

from __future__ import annotations

from typing import Any

from tests.support import Recorder, messages
from workstream.actors.events import EventBus, JobEvents
from workstream.jobs.events import JOB_COMPLETED, JOB_CREATED, JobEvent


def event(kind: str) -> JobEvent:
    return JobEvent(kind, "j", "echo", 1, 0.0)


def test_listeners_get_only_the_kinds_they_asked_for() -> None:
    bus = EventBus()
    everything: list[JobEvent] = []
    created: list[JobEvent] = []
    bus.subscribe(everything.extend)
    bus.subscribe(created.extend, kinds=[JOB_CREATED])
    bus.publish([event(JOB_CREATED), event(JOB_COMPLETED)])
    assert [e.kind for e in everything] == [JOB_CREATED, JOB_COMPLETED]
    assert [e.kind for e in created] == [JOB_CREATED]


def test_a_failing_listener_does_not_stop_the_others() -> None:
    bus = EventBus()
    got: list[JobEvent] = []

    def broken(events: Any) -> None:
        raise RuntimeError("broken listener")

    bus.subscribe(broken)
    bus.subscribe(got.extend)
    bus.publish([event(JOB_CREATED)])
    assert len(got) == 1


def test_an_actor_listener_gets_one_message_per_batch(actors: list[Any]) -> None:
    bus = EventBus()
    ref = Recorder.start()
    actors.append(ref)
    bus.subscribe_actor(ref)
    bus.publish([event(JOB_CREATED), event(JOB_COMPLETED)])
    [message] = messages(ref)
    assert isinstance(message, JobEvents)
    assert len(message.events) == 2


def test_a_stopped_actor_listener_is_ignored() -> None:
    bus = EventBus()
    ref = Recorder.start()
    bus.subscribe_actor(ref)
    ref.stop()
    bus.publish([event(JOB_CREATED)])  # no exception
    assert not ref.is_alive()


def test_a_listener_subscribed_first_is_told_before_the_others() -> None:
    bus = EventBus()
    order: list[str] = []
    bus.subscribe(lambda events: order.append("logs"))
    bus.subscribe(lambda events: order.append("metrics"))
    bus.subscribe(lambda events: order.append("dispatcher"), first=True)
    bus.publish([event(JOB_CREATED)])
    assert order == ["dispatcher", "logs", "metrics"]
