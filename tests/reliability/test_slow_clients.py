"""Scenario 16 (slow clients): slowloris headers, slow bodies and idle keep-alives that
together exceed HTTP_CONNECTION_LIMIT, while legitimate clients must still be served.

The server closes a connection whose headers take more than 10 s, and -- near the
connection limit -- any connection without a complete request for 1 s (see
workstream/http/server.py), so the legitimate clients below wait about a second, not
until the attackers' connections time out.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time

import pytest

from tests.reliability.checker import Figures
from tests.reliability.harness import Harness, scale
from tests.reliability.load import Answer
from tests.support import wait_until


class Attackers:
    """`slowloris` connections trickling header bytes, `slow_bodies` trickling a body,
    `idle` keep-alive connections after one request; one thread feeds them all."""

    def __init__(self, port: int, slowloris: int, slow_bodies: int, idle: int) -> None:
        self.port = port
        self.socks: list[tuple[str, socket.socket]] = []
        self.closed_by_server = 0
        self.opened = 0
        self._stop = threading.Event()
        for _ in range(slowloris):
            self._open("loris", b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(slow_bodies):
            self._open(
                "body",
                b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{",
            )
        for _ in range(idle):
            self._open("idle", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _open(self, kind: str, first: bytes) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.send(first)
        except OSError:
            return
        self.opened += 1
        self.socks.append((kind, sock))

    def _feed(self) -> None:
        while not self._stop.wait(0.5):
            for kind, sock in list(self.socks):
                try:
                    if kind == "loris":
                        sock.send(b"X-a: b\r\n")
                    elif kind == "body":
                        sock.send(b" ")
                    else:
                        data = sock.recv(65536)  # the answer; stays open, idle
                        if data == b"":
                            raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    self.socks.remove((kind, sock))
                    self.closed_by_server += 1
                    sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for _, sock in self.socks:
            sock.close()


def run_slow_clients(harness: Harness, attackers: int, scenario: str) -> None:
    limit = 500  # the default HTTP_CONNECTION_LIMIT, on purpose
    harness.start(HTTP_CONNECTION_LIMIT=str(limit), HTTP_CHANNEL_TIMEOUT="30s")
    port = harness.port()
    assert port is not None
    crowd = Attackers(
        port, slowloris=attackers // 2, slow_bodies=attackers // 4, idle=attackers // 4
    )
    answers: list[Answer] = []
    health: list[float] = []
    try:
        for n in range(20):  # legitimate clients, one after another, during the attack
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/health")
            assert conn.getresponse().status == 200
            health.append(time.monotonic() - started)
            conn.close()
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = json.dumps({"type": "echo", "payload": {"seq": f"legit-{n}"}})
            conn.request("POST", "/jobs", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            job = json.loads(response.read())
            answers.append(
                Answer(
                    f"legit-{n}",
                    response.status,
                    job.get("id"),
                    time.monotonic() - started,
                    None,
                    None,
                    None,
                    True,
                )
            )
            conn.close()
        # The attackers' connections are being closed (near the limit, within ~1 s).
        wait_until(lambda: crowd.closed_by_server >= 100, 30, "the server to shed attackers")
    finally:
        crowd.stop()
    harness.wait_quiescent(timeout=30)
    fig: Figures = harness.figures(
        scenario,
        answers,
        attackers=crowd.opened,
        closed_by_server=crowd.closed_by_server,
        health_max_ms=round(max(health) * 1000),
        connection_limit=limit,
    )
    fig.assert_clean()
    assert {a.status for a in answers} == {201}
    assert max(health) < 8.0
    assert crowd.closed_by_server > 0


def test_slow_clients_past_the_connection_limit_do_not_starve_others(harness: Harness) -> None:
    run_slow_clients(harness, int(scale(600, "RELIABILITY_SLOW_CLIENTS")), "slow_clients")


@pytest.mark.slow
def test_slow_clients_2000(harness: Harness) -> None:
    run_slow_clients(harness, int(scale(2000, "RELIABILITY_SLOW_CLIENTS_SLOW")), "slow_long")
