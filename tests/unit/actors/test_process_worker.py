"""The process Worker with a real child: hand-out per slot, outcomes, a timeout that stops
the child, a crash, recycling, a child that cannot import its handlers. Stand-ins record
what the Registry and the Dispatcher are told; each wait is on those messages, bounded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from tests.support import Recorder, make_job
from workstream.actors.ask import ask
from workstream.actors.dispatcher_messages import SlotClosed, WorkerIdle
from workstream.actors.events import EventBus
from workstream.actors.process_worker import ProcessWorker
from workstream.actors.process_worker_messages import AwaitReady
from workstream.actors.registry_messages import Claim, Claimed, Finish, Release
from workstream.actors.replies import answer
from workstream.actors.ticker import Ticker
from workstream.actors.worker_messages import Run
from workstream.errors import ConfigError
from workstream.handlers import Handler, HandlerTable
from workstream.jobs.events import JOB_STARTED
from workstream.proc.spec import ChildSpec

HANDLERS = ("tests.unit.proc.child_handlers",)
TIMEOUT = 60.0
# The parent needs only the timeouts; the child imports the real handlers (importing them
# here would add them to this test process's default table).
PARENT_TABLE = HandlerTable([Handler("spin", lambda payload, job: None, timeout=0.5)])


class Seen:
    """What the stand-ins were told, in order, with a bounded wait on a condition."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, message: Any) -> None:
        with self._cond:
            self.items.append(message)
            self._cond.notify_all()

    def of(self, kind: type) -> list[Any]:
        with self._cond:
            return [item for item in self.items if isinstance(item, kind)]

    def wait(self, predicate: Callable[[], Any], what: str) -> Any:
        with self._cond:
            value = self._cond.wait_for(predicate, TIMEOUT)
        assert value, f"waited {TIMEOUT}s for {what}; saw {self.items}"
        return value


@pytest.fixture
def pool() -> Iterator[Any]:
    started: list[pykka.ActorRef[Any]] = []
    ticker = Ticker()
    ticker.start()

    def start(**options: Any) -> tuple[pykka.ActorRef[Any], Seen, Seen, list[Any]]:
        seen_registry, seen_dispatcher = Seen(), Seen()
        registry = Recorder.start(respond=seen_registry)
        dispatcher = Recorder.start(respond=seen_dispatcher)
        events = EventBus()
        published: list[Any] = []
        events.subscribe(published.extend)
        spec = ChildSpec(name="worker-1", threads=2, job_handlers=HANDLERS)
        spec = spec.replace(**options.pop("spec", {}))
        ref = ProcessWorker.start(
            name="worker-1",
            owner="me",
            spec=spec,
            handlers=PARENT_TABLE,
            registry=registry,
            dispatcher=dispatcher,
            events=events,
            after=ticker.after,
            grace=1.0,
            **options,
        )
        started.extend([ref, registry, dispatcher])
        return ref, seen_registry, seen_dispatcher, published

    yield start
    for ref in started:
        ref.stop(timeout=TIMEOUT)
    ticker.stop()


def idle_slots(seen: Seen) -> list[int]:
    return [message.slot for message in seen.of(WorkerIdle)]


def finishes(seen: Seen) -> dict[str, Any]:
    return {message.outcome.job_id: message.outcome for message in seen.of(Finish)}


def test_jobs_go_down_per_slot_and_outcomes_come_back(pool: Any) -> None:
    ref, registry, dispatcher, published = pool()
    assert ask(ref, lambda reply: AwaitReady(reply), TIMEOUT) is True
    dispatcher.wait(lambda: sorted(idle_slots(dispatcher)) == [0, 1], "two idle slots")
    ref.tell(Run(make_job("a", job_type="pid"), 0))
    ref.tell(Run(make_job("b", job_type="boom"), 1))
    registry.wait(lambda: len(finishes(registry)) == 2, "two outcomes")
    outcomes = finishes(registry)
    assert outcomes["a"].error is None and outcomes["a"].worker == "worker-1.0"
    assert outcomes["b"].error == "RuntimeError: boom" and outcomes["b"].owner == "me"
    dispatcher.wait(lambda: len(idle_slots(dispatcher)) == 4, "both slots offered again")
    assert [event.job_id for event in published if event.kind == JOB_STARTED] == ["a", "b"]


def test_a_timeout_stops_the_child_and_gives_back_its_other_attempt(pool: Any) -> None:
    ref, registry, dispatcher, _ = pool()
    ask(ref, lambda reply: AwaitReady(reply), TIMEOUT)
    ref.tell(Run(make_job("slow", job_type="nap", payload={"seconds": 30}), 1))
    ref.tell(Run(make_job("spin", job_type="spin"), 0))
    registry.wait(lambda: "spin" in finishes(registry), "the timed-out attempt")
    outcome = finishes(registry)["spin"]
    assert outcome.error == "TimeoutError: the handler ran longer than its timeout of 0.5s"
    assert not outcome.abandoned
    registry.wait(lambda: registry.of(Release), "the other attempt given back")
    assert registry.of(Release)[0].job_ids == ["slow"]
    assert "slow" not in finishes(registry)
    dispatcher.wait(lambda: len(dispatcher.of(SlotClosed)) == 2, "both slots closed")
    # A replacement starts and offers both slots again.
    dispatcher.wait(lambda: len(idle_slots(dispatcher)) == 4, "the replacement's slots")
    stats = ref.proxy().stats.get(timeout=TIMEOUT)
    assert stats.restarts["timed_out"] == 1


def test_a_child_that_dies_fails_exactly_the_attempts_it_held(pool: Any) -> None:
    ref, registry, dispatcher, _ = pool()
    ask(ref, lambda reply: AwaitReady(reply), TIMEOUT)
    ref.tell(Run(make_job("d", job_type="die", payload={"code": 1}), 0))
    registry.wait(lambda: "d" in finishes(registry), "the failed attempt")
    assert finishes(registry)["d"].error == "worker process died (exit code 1)"
    assert registry.of(Release) == []
    dispatcher.wait(lambda: len(idle_slots(dispatcher)) == 4, "the replacement's slots")
    ref.tell(Run(make_job("after", job_type="echo"), 0))
    registry.wait(lambda: "after" in finishes(registry), "a job on the replacement")
    assert finishes(registry)["after"].error is None


def test_past_max_jobs_the_child_finishes_and_is_replaced(pool: Any) -> None:
    ref, registry, dispatcher, _ = pool(max_jobs=1)
    ask(ref, lambda reply: AwaitReady(reply), TIMEOUT)
    ref.tell(Run(make_job("one", job_type="pid"), 0))
    registry.wait(lambda: "one" in finishes(registry), "the first job")
    dispatcher.wait(lambda: len(idle_slots(dispatcher)) == 4, "the replacement's slots")
    ref.tell(Run(make_job("two", job_type="pid"), 1))
    registry.wait(lambda: "two" in finishes(registry), "a job on the replacement")
    outcomes = finishes(registry)
    assert outcomes["one"].result["pid"] != outcomes["two"].result["pid"]
    assert ref.proxy().stats.get(timeout=TIMEOUT).restarts["recycled"] == 1


def test_a_job_sent_to_a_closed_slot_goes_back_uncounted(pool: Any) -> None:
    ref, registry, _, _ = pool(max_jobs=1)
    ask(ref, lambda reply: AwaitReady(reply), TIMEOUT)
    ref.tell(Run(make_job("long", job_type="nap", payload={"seconds": 0.5}), 0))
    ref.tell(Run(make_job("one", job_type="echo"), 1))
    registry.wait(lambda: "one" in finishes(registry), "the job that reaches the limit")
    ref.tell(Run(make_job("late", job_type="echo"), 1))  # the Dispatcher had not heard yet
    registry.wait(lambda: registry.of(Release), "the late job given back")
    assert registry.of(Release)[0].job_ids == ["late"]
    registry.wait(lambda: "long" in finishes(registry), "the running job finishes")
    assert finishes(registry)["long"].error is None


def test_a_child_that_cannot_import_its_handlers_stops_start_up(pool: Any) -> None:
    ref, _, _, _ = pool(spec={"job_handlers": ("no_such_module_for_workstream",)})
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_for_workstream'"):
        ask(ref, lambda reply: AwaitReady(reply), TIMEOUT)


# -- finish-and-claim: a freed slot asks for its next job with the outcome that freed it


def claims(seen: Seen) -> list[Claim]:
    return seen.of(Claim)


def ready_while_handing_out(pool: Any) -> tuple[Any, Seen, Seen, list[Any], threading.Event]:
    """A ready worker whose Dispatcher hands out: freed slots claim with their outcomes."""
    handing_out = threading.Event()
    handing_out.set()
    ref, registry, dispatcher, published = pool(handing_out=handing_out)
    ask(ref, lambda reply: AwaitReady(reply), TIMEOUT)
    return ref, registry, dispatcher, published, handing_out


def finish_one(ref: Any, registry: Seen) -> Claim:
    """Run one job in slot 0; returns the claim its outcome went with."""
    ref.tell(Run(make_job("a", job_type="echo"), 0))
    registry.wait(lambda: claims(registry), "a claim for the freed slot")
    return claims(registry)[0]


def test_a_freed_slot_claims_its_next_job_with_its_outcome_while_handing_out(pool: Any) -> None:
    ref, registry, dispatcher, published, _ = ready_while_handing_out(pool)
    dispatcher.wait(lambda: sorted(idle_slots(dispatcher)) == [0, 1], "two idle slots")
    ref.tell(Run(make_job("a", job_type="echo"), 0))
    registry.wait(lambda: claims(registry), "a claim for the freed slot")
    # The outcome first, then the claim: the Registry's batch ends one and claims the next.
    kinds = [type(item) for item in registry.items if isinstance(item, Finish | Claim)]
    assert kinds == [Finish, Claim] and claims(registry)[0].limit == 1
    answer(claims(registry)[0].reply, Claimed([make_job("b", job_type="echo")], None))
    registry.wait(lambda: "b" in finishes(registry), "the next job, run in the freed slot")
    assert idle_slots(dispatcher) == [0, 1]  # slot 0 never went back to the Dispatcher
    assert [e.job_id for e in published if e.kind == JOB_STARTED] == ["a", "b"]
    # Nothing more is due: the short claim's slot is offered, and the Dispatcher is told
    # to look (it parks a claim for it).
    registry.wait(lambda: len(claims(registry)) == 2, "the claim after b")
    answer(claims(registry)[1].reply, Claimed([], None))
    dispatcher.wait(lambda: len(idle_slots(dispatcher)) == 3, "the slot offered again")
    assert dispatcher.of(WorkerIdle)[-1].look is True


def test_jobs_claimed_after_hand_out_stopped_go_back_uncounted(pool: Any) -> None:
    ref, registry, dispatcher, _, handing_out = ready_while_handing_out(pool)
    claim = finish_one(ref, registry)
    handing_out.clear()  # shutdown began while the claim was in flight
    answer(claim.reply, Claimed([make_job("late", job_type="echo")], None))
    registry.wait(lambda: registry.of(Release), "the claimed job given back")
    [release] = registry.of(Release)
    assert release.job_ids == ["late"] and release.started is False
    dispatcher.wait(lambda: len(idle_slots(dispatcher)) == 3, "the slot idle again")
    assert "late" not in finishes(registry)


def test_without_hand_out_a_freed_slot_is_offered_to_the_dispatcher(pool: Any) -> None:
    ref, registry, dispatcher, _ = pool(handing_out=threading.Event())  # not set
    ask(ref, lambda reply: AwaitReady(reply), TIMEOUT)
    ref.tell(Run(make_job("a", job_type="echo"), 0))
    dispatcher.wait(lambda: len(idle_slots(dispatcher)) == 3, "the slot offered again")
    assert claims(registry) == []


def test_a_claim_in_flight_when_the_child_dies_gives_its_jobs_back(pool: Any) -> None:
    ref, registry, dispatcher, _, _ = ready_while_handing_out(pool)
    claim = finish_one(ref, registry)
    ref.tell(Run(make_job("d", job_type="die", payload={"code": 1}), 1))
    registry.wait(lambda: "d" in finishes(registry), "the crash")
    dispatcher.wait(lambda: {0, 1} <= {m.slot for m in dispatcher.of(SlotClosed)}, "closed")
    answer(claim.reply, Claimed([make_job("late", job_type="echo")], None))
    registry.wait(lambda: registry.of(Release), "the claimed job given back")
    assert registry.of(Release)[0].job_ids == ["late"]
    dispatcher.wait(lambda: len(idle_slots(dispatcher)) == 4, "the replacement's slots")
    assert "late" not in finishes(registry)
