"""The Sweeper in isolation: a recording stand-in for the Registry answers sweeps."""

from __future__ import annotations

from collections import deque
from typing import Any

import pykka
import pytest

from tests.support import Recorder, messages
from workstream.actors.registry_messages import Sweep, Swept
from workstream.actors.sweeper import Sweeper
from workstream.actors.sweeper_messages import Tick
from workstream.errors import StorageUnavailable


class Script:
    def __init__(self) -> None:
        self.results: deque[Any] = deque()
        self.held: list[Sweep] = []
        self.holding = False

    def respond(self, message: Any) -> None:
        if not isinstance(message, Sweep):
            return
        if self.holding:
            self.held.append(message)
            return
        result = self.results.popleft() if self.results else Swept(0, 0, more=False)
        if isinstance(result, BaseException):
            message.reply.set_exception((type(result), result, None))
        else:
            message.reply.set(result)


@pytest.fixture
def sweeper(actors: list[Any]) -> tuple[pykka.ActorRef[Any], pykka.ActorRef[Any], Script]:
    script = Script()
    registry = Recorder.start(respond=script.respond)
    ref = Sweeper.start(registry=registry, batch=50)
    actors.extend([registry, ref])
    return ref, registry, script


def settle(ref: pykka.ActorRef[Any], registry: pykka.ActorRef[Any]) -> list[Sweep]:
    """Barriers on both actors, enough for a couple of sweep round trips."""
    for _ in range(4):
        ref.ask(_Noop(), timeout=2)
        messages(registry)
    return [m for m in messages(registry) if isinstance(m, Sweep)]


class _Noop:
    """A message the Sweeper ignores; asking it is a barrier."""


def test_a_tick_asks_the_registry_to_sweep(sweeper: Any) -> None:
    ref, registry, _ = sweeper
    ref.tell(Tick())
    sweeps = settle(ref, registry)
    assert len(sweeps) == 1
    assert sweeps[0].limit == 50


def test_ticks_while_a_sweep_runs_do_not_pile_up(sweeper: Any) -> None:
    ref, registry, script = sweeper
    script.holding = True
    for _ in range(5):
        ref.tell(Tick())
    assert len(settle(ref, registry)) == 1


def test_a_full_sweep_is_followed_at_once_by_another(sweeper: Any) -> None:
    ref, registry, script = sweeper
    script.results.extend([Swept(50, 0, more=True), Swept(7, 0, more=False)])
    ref.tell(Tick())
    assert len(settle(ref, registry)) == 2


def test_a_failed_sweep_waits_for_the_next_tick(sweeper: Any) -> None:
    ref, registry, script = sweeper
    script.results.append(StorageUnavailable("busy"))
    ref.tell(Tick())
    assert len(settle(ref, registry)) == 1
    assert ref.is_alive()
    ref.tell(Tick())
    assert len(settle(ref, registry)) == 2
