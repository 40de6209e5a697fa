"""A load generator: threads submitting jobs over keep-alive HTTP, recording every answer.

Each submission carries a unique `seq` in its payload, so the checker can find it in the
database whatever the answer was (a 201, a 429, or a connection cut by a SIGKILL). The
target is a function returning the server's current port, so the generator keeps going
across restarts (a refused connection is recorded and retried after a short pause).
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.reliability.hygiene import ErrorCollector


@dataclass
class Answer:
    seq: str
    status: int | None  # None: no answer (connection refused, reset, timed out)
    job_id: str | None
    latency: float  # seconds
    retry_after: str | None
    code: str | None  # the error body's code
    error: str | None  # the client-side exception, if any
    sent: bool  # False only when the connection was refused: nothing reached the server
    request_id: str | None = None  # a 5xx's request id (also in the server's log)


def post_job(
    conn: http.client.HTTPConnection, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn.request(
        "POST",
        "/jobs",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    response = conn.getresponse()
    raw = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, raw


class LoadGenerator:
    """`threads` clients submitting `make_job(seq)` at `rate` per second in total (None:
    as fast as answers come), until `stop()` or `total` submissions."""

    def __init__(
        self,
        port: Callable[[], int | None],
        make_job: Callable[[str], dict[str, Any]],
        *,
        threads: int = 4,
        rate: float | None = None,
        total: int | None = None,
        token: str | None = None,
        collector: ErrorCollector | None = None,
        timeout: float = 20.0,
        tag: str = "s",
    ) -> None:
        self._port = port
        self._make_job = make_job
        self._threads_n = threads
        self._interval = None if rate is None else 1.0 / rate
        self._total = total
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._collector = collector
        self._timeout = timeout
        self._tag = tag
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._next_at = time.monotonic()
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared: paused
        self._running.set()
        self._busy = 0  # clients with a request in flight
        self._threads: list[threading.Thread] = []
        self.answers: list[Answer] = []

    # -- control -----------------------------------------------------------------------

    def start(self) -> LoadGenerator:
        self._next_at = time.monotonic()
        for n in range(self._threads_n):
            thread = threading.Thread(target=self._client, name=f"load-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> list[Answer]:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "load threads did not stop"
        return self.answers

    def pause(self, timeout: float = 60.0) -> None:
        """Stop sending and wait until every request in flight has its answer."""
        self._running.clear()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._busy == 0:
                    return
            assert time.monotonic() < deadline, "requests still in flight"
            time.sleep(0.02)

    def resume(self) -> None:
        self._running.set()

    def wait_done(self, timeout: float) -> list[Answer]:
        """With `total`: wait until every submission has its answer."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        return self.stop()

    def count(self, status: int | None) -> int:
        with self._lock:
            return sum(1 for answer in self.answers if answer.status == status)

    # -- one client --------------------------------------------------------------------

    def _ticket(self) -> str | None:
        while not self._running.wait(0.1):
            if self._stop.is_set():
                return None
        with self._lock:
            self._busy += 1
            n = next(self._counter)
            if self._total is not None and n >= self._total:
                self._busy -= 1
                return None
            wait = 0.0
            if self._interval is not None:
                now = time.monotonic()
                self._next_at = max(self._next_at + self._interval, now - 1.0)
                wait = self._next_at - now
        if wait > 0:
            self._stop.wait(wait)
        return f"{self._tag}-{n}"

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        conn_port: int | None = None
        while not self._stop.is_set():
            seq = self._ticket()
            if seq is None:
                break
            if self._stop.is_set():
                with self._lock:
                    self._busy -= 1
                break
            port = self._port()
            if conn is not None and port != conn_port:
                conn.close()
                conn = None
            if conn is None and port is not None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self._timeout)
                conn_port = port
            started = time.monotonic()
            answer = Answer(seq, None, None, 0.0, None, None, None, True)
            body = self._make_job(seq)
            try:
                if conn is None:
                    raise ConnectionRefusedError("no server")
                status, headers, raw = post_job(conn, body, self._headers)
            except (OSError, http.client.HTTPException) as exc:
                answer.error = type(exc).__name__
                answer.sent = not isinstance(exc, ConnectionRefusedError)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.05)  # the server is down or restarting
            else:
                answer.status = status
                answer.retry_after = headers.get("retry-after")
                parsed = _json(raw)
                if status in (200, 201) and isinstance(parsed, dict):
                    answer.job_id = parsed.get("id")
                elif isinstance(parsed, dict):
                    answer.code = parsed.get("code")
                    answer.request_id = parsed.get("request_id")
                if status >= 400 and self._collector is not None:
                    self._collector.add("POST /jobs", status, headers, raw)
                if headers.get("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            answer.latency = time.monotonic() - started
            with self._lock:
                self.answers.append(answer)
                self._busy -= 1
        if conn is not None:
            conn.close()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
