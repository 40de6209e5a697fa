"""The Registry: the only writer of job state. Its messages are in `registry_messages`.

A thin actor over plain objects: the `JobLedger` decides each command inside a transaction,
the `Committer` runs a batch of them in one transaction (and decides how a failure spreads),
`CommitRepair` mends what a COMMIT reported failed may have left. The actor only gives them
one thread and an inbox, which makes the batches.

Commands are *group-committed*: the first command to arrive in an empty buffer makes the
Registry `tell` itself `_FLUSH`; since the inbox is FIFO, every command that arrived before
that flush is in its batch. Only after the commit are replies resolved and events
published: an accepted job is on disk before anyone hears that it was accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pykka

from workstream.actors.batch import Answer
from workstream.actors.committer import Committer
from workstream.actors.events import EventBus
from workstream.actors.job_ledger import JobLedger
from workstream.actors.repair import CommitRepair
from workstream.actors.replies import Callback, answer
from workstream.actors.write_health import WriteHealth
from workstream.jobs.events import JobEvent
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.throttle import Throttle
from workstream.store.base import Store

__all__ = ["Registry"]


class _Flush:
    pass


_FLUSH = _Flush()


class Registry(pykka.ThreadingActor):
    # Stopped explicitly at shutdown; a daemon thread cannot keep a failed start-up alive.
    use_daemon_thread = True

    def __init__(
        self,
        *,
        store: Store,
        events: EventBus,
        owner: str,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        retry_policy: RetryPolicy,
        lease_duration: float,
        default_max_retries: int,
        write_health: WriteHealth | None = None,
        max_scheduled: int | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        super().__init__()
        self._events = events
        self._buffer: list[Any] = []
        ledger = JobLedger(
            owner=owner,
            new_id=new_id,
            retry_policy=retry_policy,
            lease_duration=lease_duration,
            default_max_retries=default_max_retries,
            max_scheduled=max_scheduled,
            throttle=throttle,
        )
        self._committer = Committer(
            store=store,
            ledger=ledger,
            repair=CommitRepair(),
            clock=clock,
            write_health=write_health or WriteHealth(),
            settle=self._settle,
        )

    # Every message is buffered; the flush runs them in one transaction.
    def on_receive(self, message: Any) -> Any:
        if message is _FLUSH:
            commands, self._buffer = self._buffer, []
            self._committer.flush(commands)
            return None
        self._buffer.append(message)
        if len(self._buffer) == 1:
            self.actor_ref.tell(_FLUSH)
        return None

    def _settle(self, answers: list[Answer], events: Sequence[JobEvent] | None) -> None:
        """After each transaction: answer its requests, then publish what it committed.
        Actors first (a claim's jobs go to the Dispatcher or a Worker): waking an HTTP
        thread first would have a job's start wait for its 201 to be rendered."""
        for reply, value, error in answers:
            if isinstance(reply, Callback):
                answer(reply, value, error)
        for reply, value, error in answers:
            if not isinstance(reply, Callback):
                answer(reply, value, error)
        if events is not None:
            self._events.publish(events)
