"""The Sweeper's retention in isolation: a recording stand-in for the Registry answers the
sweeps and purges; time is a number the test sets."""

from __future__ import annotations

from collections import deque
from typing import Any

import pykka

from tests.support import Recorder, messages
from workstream.actors.registry_messages import Purge, Purged, Sweep, Swept
from workstream.actors.sweeper import Retention, Sweeper
from workstream.actors.sweeper_messages import Tick
from workstream.errors import StorageUnavailable
from workstream.store.base import DeletedJob

NOW = 1_800_000_000.0


class Script:
    def __init__(self) -> None:
        self.purges: deque[Any] = deque()
        self.holding = False  # purges get no answer (they stay in flight)

    def respond(self, message: Any) -> None:
        if isinstance(message, Sweep):
            message.reply.set(Swept(0, 0, more=False))
        elif isinstance(message, Purge) and not self.holding:
            result = self.purges.popleft() if self.purges else Purged([], more=False)
            if isinstance(result, BaseException):
                message.reply.set_exception((type(result), result, None))
            else:
                message.reply.set(result)


class _Noop:
    pass


def start(actors: list[Any], retention: Retention) -> tuple[Any, Any, Script, list[Any]]:
    script = Script()
    removed: list[Any] = []
    registry = Recorder.start(respond=script.respond)
    retention = Retention(
        completed=retention.completed,
        failed=retention.failed,
        on_purged=removed.append,
        batch=retention.batch,
    )
    ref = Sweeper.start(registry=registry, retention=retention, clock=lambda: NOW)
    actors.extend([registry, ref])
    return ref, registry, script, removed


def purges(ref: pykka.ActorRef[Any], registry: pykka.ActorRef[Any]) -> list[Purge]:
    for _ in range(6):
        ref.ask(_Noop(), timeout=2)
        messages(registry)
    return [m for m in messages(registry) if isinstance(m, Purge)]


def deleted(*ids: str) -> list[DeletedJob]:
    return [DeletedJob(job_id, "email_send") for job_id in ids]


def test_a_tick_purges_with_both_cutoffs(actors: list[Any]) -> None:
    ref, registry, _, _ = start(actors, Retention(completed=60.0, failed=3600.0, batch=500))
    ref.tell(Tick())
    [purge] = purges(ref, registry)
    assert (purge.completed_before, purge.failed_before, purge.limit) == (
        NOW - 60,
        NOW - 3600,
        500,
    )


def test_zero_keeps_that_kind_for_ever_and_both_zero_purges_nothing(actors: list[Any]) -> None:
    ref, registry, _, _ = start(actors, Retention(completed=60.0, failed=0.0))
    ref.tell(Tick())
    [purge] = purges(ref, registry)
    assert purge.failed_before is None and purge.completed_before == NOW - 60
    ref2, registry2, _, _ = start(actors, Retention(completed=0.0, failed=0.0))
    ref2.tell(Tick())
    assert purges(ref2, registry2) == []


def test_a_full_batch_is_followed_at_once_and_files_are_removed_after_each(
    actors: list[Any],
) -> None:
    ref, registry, script, removed = start(actors, Retention(completed=60.0, batch=2))
    script.purges.extend([Purged(deleted("a", "b"), more=True), Purged(deleted("c"), more=False)])
    ref.tell(Tick())
    assert len(purges(ref, registry)) == 2
    assert removed == [deleted("a", "b"), deleted("c")]
    assert ref.proxy().purged.get() == 3


def test_a_failed_purge_waits_for_the_next_tick(actors: list[Any]) -> None:
    ref, registry, script, removed = start(actors, Retention(completed=60.0))
    script.purges.append(StorageUnavailable("busy"))
    ref.tell(Tick())
    assert len(purges(ref, registry)) == 1
    assert ref.is_alive() and removed == []
    ref.tell(Tick())
    assert len(purges(ref, registry)) == 2


def test_ticks_while_a_purge_runs_do_not_pile_up(actors: list[Any]) -> None:
    ref, registry, script, _ = start(actors, Retention(completed=60.0))
    script.holding = True
    for _ in range(5):
        ref.tell(Tick())
    assert len(purges(ref, registry)) == 1
