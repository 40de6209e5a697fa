"""The Sweeper: on every tick, ask the Registry to recover jobs whose lease expired and to
requeue failed jobs whose backoff is over. (A retry does not wait for this: the Dispatcher
claims at its run_at and the claim requeues it; the sweep catches those no claim took yet,
every worker being busy, so that they show as pending.) One sweep in flight at a time; a
sweep that hit its batch limit is followed at once by another, so a large backlog drains
in bounded transactions without waiting for the next tick."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from workstream.actors.registry_messages import Sweep, Swept
from workstream.actors.replies import Callback
from workstream.actors.sweeper_messages import Tick
from workstream.jobs.limits import SWEEP_BATCH

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _SweepDone:
    swept: Swept | None
    error: BaseException | None


class Sweeper(pykka.ThreadingActor):
    # Stopped explicitly at shutdown; a daemon thread cannot keep a failed start-up alive.
    use_daemon_thread = True

    def __init__(self, *, registry: pykka.ActorRef[Any], batch: int = SWEEP_BATCH) -> None:
        super().__init__()
        self._registry = registry
        self._batch = batch
        self._sweeping = False
        self.sweeps = 0

    def on_receive(self, message: Any) -> Any:
        handler = self._HANDLERS.get(type(message))
        if handler is None:
            log.warning("sweeper ignored unknown message %r", type(message).__name__)
            return None
        return handler(self, message)

    def _tick(self, message: Tick) -> None:
        self._start_sweep()

    def _sweep_done(self, message: _SweepDone) -> None:
        self._sweeping = False
        self.sweeps += 1
        if message.error is not None:
            log.warning("sweep failed: %s", message.error, extra={"event": "sweep_failed"})
        elif message.swept is not None and message.swept.more:
            self._start_sweep()

    def _start_sweep(self) -> None:
        if self._sweeping:
            return
        self._sweeping = True
        ref = self.actor_ref

        def done(value: Any, error: BaseException | None) -> None:
            ref.tell(_SweepDone(value, error))

        self._registry.tell(Sweep(reply=Callback(done), limit=self._batch))

    _HANDLERS: dict[type, Callable[..., Any]] = {Tick: _tick, _SweepDone: _sweep_done}
