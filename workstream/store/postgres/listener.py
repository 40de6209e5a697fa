"""Wake-ups from other nodes: LISTEN on a connection of its own, in a daemon thread.

Every (re)connection wakes the node once, to catch up on anything missed while away; a
lost connection is retried with a doubling delay. Notifications carry the sender's token,
so a node ignores its own, and a burst of them is one wake-up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from workstream.store.postgres.connections import Connection
from workstream.store.postgres.errors import connect_reason
from workstream.store.postgres.queries import SQL

log = logging.getLogger(__package__)  # the package's logger: its name is in every log line


class Listener(threading.Thread):
    def __init__(
        self,
        connect: Callable[[], Connection],
        token: str,
        wake: Callable[[], None],
        backoff: tuple[float, float],
    ) -> None:
        super().__init__(name="workstream-listen", daemon=True)
        self._connect = connect
        self._token = token  # this node's: its own notifications wake nobody
        self._wake = wake
        self._backoff = backoff  # (first, longest) delay before connecting again
        self._stopping = threading.Event()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self.join(timeout=timeout)

    def run(self) -> None:
        first_delay, max_delay = self._backoff
        delay = first_delay
        connected_before = False
        while not self._stopping.is_set():
            try:
                conn = self._connect()
            except psycopg.Error as exc:
                log.warning(
                    "listen connection failed (%s); retrying in %.1fs",
                    connect_reason(exc),
                    delay,
                    extra={"event": "listen_failed"},
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, max_delay)
                continue
            try:
                with conn:
                    conn.execute(SQL["listen"])
                    if connected_before:
                        log.warning(
                            "listen connection re-established",
                            extra={"event": "listen_reconnected"},
                        )
                    connected_before = True
                    delay = first_delay
                    self._call_wake()  # catch up on anything missed while away
                    self._receive(conn)
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    break
                log.warning(
                    "listen connection lost: %s; reconnecting in %.1fs",
                    type(exc).__name__,
                    delay,
                    extra={"event": "listen_lost"},
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, max_delay)

    def _receive(self, conn: Connection) -> None:
        while not self._stopping.is_set():
            woken = False
            for notify in conn.notifies(timeout=0.25, stop_after=1):
                woken = woken or notify.payload != self._token
            if not woken:
                continue
            for _ in conn.notifies(timeout=0):  # coalesce a burst into one wake-up
                pass
            self._call_wake()

    def _call_wake(self) -> None:
        try:
            self._wake()
        except Exception:
            log.exception("wake-up callback failed", extra={"event": "listen_wake_failed"})
