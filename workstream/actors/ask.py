"""The one way a thread outside the actors asks an actor, always with a bound.

Inside the actors nobody blocks: an actor that needs an answer passes a `Callback` (ask
down, tell up). A thread outside them (an HTTP request, start-up, shutdown, an extension)
tells the request with a `pykka.ThreadingFuture` as its reply and waits at most `timeout`
for it, so a stuck actor costs the caller a 503, never a hung thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka

from workstream.actors.replies import Ticket
from workstream.errors import ServiceBusy, ShuttingDown

# Bound on waiting for a submission the Registry has begun to store, past the caller's own
# timeout: its transaction ends within the store's own timeouts (SQLite's busy timeout,
# PostgreSQL's statement and lock timeouts, a few seconds each).
STORE_BOUND = 30.0


def ask(
    ref: pykka.ActorRef[Any],
    make: Callable[[pykka.ThreadingFuture[Any]], Any],
    timeout: float,
    ticket: Ticket | None = None,
) -> Any:
    """Tell `ref` the request `make(reply)` and wait at most `timeout` for its answer.

    With a `ticket`, a request the Registry has already begun to store is waited for until
    its transaction ends (bounded by STORE_BOUND): it is answered with its outcome, never
    with a 503 that would hide a stored job. Raises ShuttingDown if the actor is gone and
    ServiceBusy if it does not answer in time."""
    future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    try:
        ref.tell(make(future))
        try:
            return future.get(timeout=timeout)
        except pykka.Timeout:
            if ticket is None or ticket.abandon():
                raise ServiceBusy(
                    "the server did not answer in time; nothing was stored"
                    if ticket is not None
                    else "the server did not answer in time; the outcome is unknown"
                ) from None
            return future.get(timeout=STORE_BOUND)
    except pykka.ActorDeadError:
        raise ShuttingDown("the server is shutting down") from None
    except pykka.Timeout:
        raise ServiceBusy(
            "the server did not answer in time; the outcome is unknown "
            "(check the job, or resubmit with the same Idempotency-Key)"
        ) from None
