"""How an actor answers a request without the caller blocking inside an actor.

A request carries a `Reply`: anything with pykka's Future setters. A thread outside the
actors passes a `pykka.ThreadingFuture` and waits on it with a timeout; an actor passes a
`Callback` that turns the answer into a `tell` to itself (ask down, tell up).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Reply(Protocol):
    def set(self, value: Any = None) -> None: ...

    def set_exception(self, exc_info: Any = None) -> None: ...


class Callback:
    """A Reply that calls `fn(value, error)`: exactly one of them is meaningful."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[Any, BaseException | None], None]) -> None:
        self._fn = fn

    def set(self, value: Any = None) -> None:
        self._fn(value, None)

    def set_exception(self, exc_info: Any = None) -> None:
        self._fn(None, exc_info[1])


def answer(reply: Reply | None, value: Any = None, error: BaseException | None = None) -> None:
    """Resolve `reply` with a value or an error. Never raises: a caller that gave up (its
    actor stopped, its future was already set) must not break the answering actor."""
    if reply is None:
        return
    try:
        if error is None:
            reply.set(value)
        else:
            reply.set_exception((type(error), error, error.__traceback__))
    except Exception:
        log.debug("reply could not be delivered", exc_info=True)


class Ticket:
    """Settles, once, who owns a request whose caller may stop waiting.

    The caller waits a bounded time; the Registry may be slow to reach the request (a long
    queue, a database lock). If the caller gives up first (`abandon`), the Registry must
    not store anything: the caller answered "nothing was stored". If the Registry takes it
    first (`take`, inside its transaction), the caller keeps waiting for the outcome —
    bounded by the store's own timeouts — so that a stored job is never answered 503.
    """

    __slots__ = ("_lock", "_state")

    _WAITING, _TAKEN, _ABANDONED = range(3)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = self._WAITING

    def take(self) -> bool:
        """The Registry: may I go on? False once the caller has given up. Repeatable."""
        with self._lock:
            if self._state == self._ABANDONED:
                return False
            self._state = self._TAKEN
            return True

    def abandon(self) -> bool:
        """The caller: may I stop waiting? False once the Registry has taken the request."""
        with self._lock:
            if self._state == self._TAKEN:
                return False
            self._state = self._ABANDONED
            return True
