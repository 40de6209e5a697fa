"""A client-side bound on database calls that the server's own timeouts cannot give.

`statement_timeout` and `lock_timeout` are enforced by PostgreSQL, and TCP keepalives are
answered by any host that is up: a server (or a pooler in front of it) that accepts
connections and then stops answering would hold a caller for as long as it stays frozen.
The watchdog knows which connections are in a call and since when; one whose call runs
past its bound has its socket shut down, so the blocked call fails at once
(`psycopg.OperationalError`, which the store reports as `StorageUnavailable`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

GetConnection = Callable[[], Any]  # the connection now in the call (it may be replaced)


class Watchdog:
    def __init__(self, *, tick: float = 0.25, monotonic: Callable[[], float] = time.monotonic):
        self._tick = tick
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[float, GetConnection]] = {}
        self._next = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cut = 0  # connections shut down so far

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pg-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)

    @contextmanager
    def limit(self, connection: GetConnection, seconds: float) -> Iterator[None]:
        """While inside, the connection `connection()` returns is cut if the block runs
        longer than `seconds`."""
        with self._lock:
            key = self._next
            self._next += 1
            self._calls[key] = (self._monotonic() + seconds, connection)
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop(key, None)

    def check(self) -> int:
        """Cut every connection past its bound; how many (the thread calls this)."""
        now = self._monotonic()
        with self._lock:
            late = [(key, get) for key, (deadline, get) in self._calls.items() if now > deadline]
            for key, _ in late:
                del self._calls[key]  # cut once
        for _, get in late:
            if shut_down(get()):
                self.cut += 1
                log.warning(
                    "a database call outlived its bound: connection cut",
                    extra={"event": "storage_call_cut"},
                )
        return len(late)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self.check()
            except Exception:
                log.exception("watchdog check failed", extra={"event": "storage_error"})


def shut_down(conn: Any) -> bool:
    """Shut down a psycopg connection's socket (both ways) without closing its file
    descriptor, which libpq still owns: its blocked call returns with an error."""
    if conn is None:
        return False
    try:
        fd = conn.pgconn.socket
    except Exception:  # closed already
        return False
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True
