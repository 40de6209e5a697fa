"""HttpServer: the real waitress server on a free port, over real sockets.

Requests that waitress refuses itself are sent so that the server has read every byte
before it answers and closes; unread bytes would make the kernel reset the connection and
the client could lose the answer. Every socket has a timeout, so a bug fails the test
instead of hanging it.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.unit.http.fakes import FakeService
from workstream.http.app import create_app
from workstream.http.server import MAX_HEADER_BYTES, HttpServer

ONE_MIB = 1_048_576
TIMEOUT = 5.0


@dataclass
class Running:
    server: HttpServer
    port: int
    service: FakeService


def _start(app, channel_timeout: float = 30) -> tuple[HttpServer, int]:
    server = HttpServer(
        app,
        host="127.0.0.1",
        port=0,
        threads=2,
        connection_limit=20,
        channel_timeout=channel_timeout,
    )
    port = server.start()
    return server, port


@pytest.fixture
def running() -> Iterator[Running]:
    service = FakeService()
    server, port = _start(create_app(service))
    thread = server.serve_in_thread()
    yield Running(server, port, service)
    server.stop(timeout=TIMEOUT)
    thread.join(timeout=TIMEOUT)
    assert not thread.is_alive()


def _connect(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)


def _exchange(port: int, raw: bytes) -> tuple[http.client.HTTPResponse, bytes]:
    """Send raw bytes, read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response, response.read()


def _assert_no_library_named(response: http.client.HTTPResponse, body: bytes) -> None:
    exposed = (str(response.headers) + body.decode("utf-8", "replace")).lower()
    assert "waitress" not in exposed
    assert "server" not in {name.lower() for name in response.headers}


def _assert_json_error(response: http.client.HTTPResponse, body: bytes, status: int, code: str):
    assert response.status == status, body
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("X-Request-Id")
    assert json.loads(body)["code"] == code
    _assert_no_library_named(response, body)


def test_serves_requests_on_a_kept_alive_connection(running):
    connection = _connect(running.port)
    connection.request(
        "POST", "/jobs", body=b'{"type": "echo"}', headers={"Content-Type": "application/json"}
    )
    created = connection.getresponse()
    body = created.read()
    first_socket = connection.sock

    connection.request("GET", created.getheader("Location"))
    fetched = connection.getresponse()
    fetched_body = fetched.read()

    assert created.status == 201
    assert fetched.status == 200
    assert json.loads(fetched_body) == json.loads(body)
    assert connection.sock is first_socket  # the same connection served both
    _assert_no_library_named(fetched, fetched_body)
    connection.close()


def test_headers_too_large_get_a_json_431(running):
    request_line = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Filler: "
    end = b"\r\n\r\n"
    raw = request_line + b"a" * (MAX_HEADER_BYTES - len(request_line) - len(end)) + end

    response, body = _exchange(running.port, raw)

    _assert_json_error(response, body, 431, "headers_too_large")


def test_a_huge_declared_content_length_gets_a_json_413_before_the_body(running):
    connection = _connect(running.port)
    connection.putrequest("POST", "/jobs")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(10**12))
    connection.endheaders()

    response = connection.getresponse()

    _assert_json_error(response, response.read(), 413, "payload_too_large")
    connection.close()


def test_a_body_of_exactly_1_mib_is_served_and_one_byte_more_is_413(running):
    head, tail = b'{"type": "echo", "payload": "', b'"}'
    body = head + b"x" * (ONE_MIB - len(head) - len(tail)) + tail
    connection = _connect(running.port)
    connection.request("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})
    accepted = connection.getresponse()
    accepted.read()
    connection.close()

    connection = _connect(running.port)
    connection.putrequest("POST", "/jobs")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(ONE_MIB + 1))
    connection.endheaders()
    refused = connection.getresponse()

    assert accepted.status == 201
    _assert_json_error(refused, refused.read(), 413, "payload_too_large")
    connection.close()


def _chunked(body: bytes, chunk_size: int) -> bytes:
    head = (
        b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
    framed = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for chunk in chunks)
    return head + framed + b"0\r\n\r\n"


def _one_mib_submission(extra: int = 0) -> bytes:
    head, tail = b'{"type": "echo", "payload": "', b'"}'
    return head + b"x" * (ONE_MIB + extra - len(head) - len(tail)) + tail


def test_a_chunked_body_of_exactly_1_mib_is_served_the_framing_does_not_count(running):
    response, body = _exchange(running.port, _chunked(_one_mib_submission(), 4096))

    assert response.status == 201, body


def test_a_chunked_body_past_the_limit_gets_a_json_413(running):
    response, body = _exchange(running.port, _chunked(_one_mib_submission(1), 4096))

    _assert_json_error(response, body, 413, "payload_too_large")


def test_an_unknown_transfer_coding_is_a_json_400_not_a_5xx(running):
    raw = (
        b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    )

    response, body = _exchange(running.port, raw)

    _assert_json_error(response, body, 400, "invalid_request")


def test_a_malformed_request_gets_a_json_400(running):
    raw = b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Length: many\r\n\r\n"

    response, body = _exchange(running.port, raw)

    _assert_json_error(response, body, 400, "invalid_request")


def test_a_stalled_body_neither_blocks_others_nor_stays_open():
    """Waitress buffers bodies in its loop, so a client that stops halfway holds no worker
    thread; `channel_timeout` then closes its connection."""
    server, port = _start(create_app(FakeService()), channel_timeout=1)
    thread = server.serve_in_thread()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as stalled:
            stalled.sendall(
                b"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"type": '
            )
            healthy = _connect(port)
            healthy.request("GET", "/health")
            assert healthy.getresponse().status == 200
            healthy.close()

            started = time.monotonic()
            assert stalled.recv(1) == b""  # closed by the server, not answered
            assert time.monotonic() - started < TIMEOUT
    finally:
        assert server.stop(timeout=TIMEOUT)
        thread.join(timeout=TIMEOUT)


def _trickle_until_closed(sock: socket.socket, limit: float) -> float:
    """Send one header byte every 0.2 s (never finishing the headers) until the server
    closes the connection; returns how long that took."""
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    sock.settimeout(0.2)
    while time.monotonic() - started < limit:
        try:
            if sock.recv(1) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        try:
            sock.sendall(b"X")
        except OSError:  # reset: closed
            return time.monotonic() - started
    raise AssertionError(f"the trickling connection was still open after {limit}s")


def test_headers_that_trickle_past_the_header_timeout_are_cut_off():
    server = HttpServer(
        create_app(FakeService()),
        host="127.0.0.1",
        port=0,
        threads=2,
        connection_limit=50,
        channel_timeout=30,
        header_timeout=1.0,
    )
    port = server.start()
    thread = server.serve_in_thread()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as slow:
            elapsed = _trickle_until_closed(slow, limit=10)
        assert 1.0 <= elapsed < 4.0
    finally:
        assert server.stop(timeout=TIMEOUT)
        thread.join(timeout=TIMEOUT)


def test_near_the_connection_limit_stalled_connections_make_room_for_new_ones():
    server = HttpServer(
        create_app(FakeService()),
        host="127.0.0.1",
        port=0,
        threads=2,
        connection_limit=10,
        channel_timeout=30,
    )
    port = server.start()
    thread = server.serve_in_thread()
    stalled = []
    try:
        for _ in range(12):  # past the limit: some wait in the backlog
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")  # never finished
            stalled.append(sock)
        started = time.monotonic()
        healthy = _connect(port)
        healthy.request("GET", "/health")
        assert healthy.getresponse().status == 200
        assert time.monotonic() - started < TIMEOUT
        healthy.close()
    finally:
        for sock in stalled:
            sock.close()
        assert server.stop(timeout=TIMEOUT)
        thread.join(timeout=TIMEOUT)


def test_an_app_failing_outside_the_framework_gets_a_json_500_with_a_request_id():
    def broken_app(environ, start_response):
        raise RuntimeError('sqlite3: SELECT failed in File "/srv/app.py"')

    server, port = _start(broken_app)
    thread = server.serve_in_thread()
    try:
        response, body = _exchange(port, b"GET /jobs HTTP/1.1\r\nHost: localhost\r\n\r\n")
    finally:
        assert server.stop(timeout=TIMEOUT)
        thread.join(timeout=TIMEOUT)

    _assert_json_error(response, body, 500, "internal_error")
    assert json.loads(body)["request_id"] == response.getheader("X-Request-Id")
    for word in ("sqlite", "SELECT", ".py", "Traceback"):
        assert word not in body.decode()


def test_stop_returns_promptly_with_an_idle_keep_alive_connection_open(running):
    connection = _connect(running.port)
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    assert not response.will_close  # the connection stays open, idle

    started = time.monotonic()
    stopped = running.server.stop(timeout=TIMEOUT)
    elapsed = time.monotonic() - started

    assert stopped
    assert elapsed < 2.0
    assert connection.sock.recv(1) == b""  # the server closed the idle connection
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT)
    connection.close()


def test_stop_before_serve_releases_the_port():
    server, port = _start(create_app(FakeService()))

    assert server.stop(timeout=TIMEOUT)
    assert server.stop(timeout=TIMEOUT)  # again: nothing to do
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    server.serve()  # returns at once: the server was stopped


def test_the_port_is_known_once_started():
    server = HttpServer(
        create_app(FakeService()),
        host="127.0.0.1",
        port=0,
        threads=1,
        connection_limit=5,
        channel_timeout=0.5,
    )
    with pytest.raises(RuntimeError):
        _ = server.port

    port = server.start()

    assert port > 0 and server.port == port
    assert server.stop(timeout=TIMEOUT)


def test_stop_lets_a_request_in_progress_send_its_answer():
    """A client whose request was being answered at shutdown hears the answer (its job may
    be stored: cutting the connection would leave it guessing)."""
    import threading

    entered, release = threading.Event(), threading.Event()

    def slow_app(environ, start_response):
        entered.set()
        assert release.wait(TIMEOUT)
        start_response("201 Created", [("Content-Type", "application/json")])
        return [b'{"stored": true}']

    server, port = _start(slow_app)
    thread = server.serve_in_thread()
    busy, idle = _connect(port), _connect(port)
    try:
        idle.request("GET", "/")  # answered, then left open as an idle keep-alive
        release.set()
        idle.getresponse().read()
        release.clear()
        entered.clear()
        busy.request("POST", "/jobs", body=b"{}", headers={"Content-Type": "application/json"})
        assert entered.wait(TIMEOUT)
        stopped: list[bool] = []
        stopper = threading.Thread(target=lambda: stopped.append(server.stop(timeout=TIMEOUT)))
        stopper.start()
        # The idle connection is closed at once, while the busy one is still waiting.
        idle.sock.settimeout(TIMEOUT)
        assert idle.sock.recv(1) == b""
        release.set()
        response = busy.getresponse()
        assert (response.status, response.read()) == (201, b'{"stored": true}')
        assert response.getheader("Connection") == "close"
        stopper.join(TIMEOUT)
        assert stopped == [True]
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    finally:
        release.set()
        busy.close()
        idle.close()


def test_the_loop_leaves_a_connection_alone_while_its_request_is_answered():
    """While a request's task runs, its thread sends the response itself and pulls the
    trigger when it ends, so the loop must not ask `poll()` for "writable" on that
    connection: the task holds the buffer's lock while it sends, `handle_write` cannot
    take it, and the loop would spin on the GIL the task needs (at 64 connections this cut
    submissions to a fifth). Past the high watermark the task waits for the loop to drain
    the buffer, and a closing connection must still be flushed: then it is writable."""
    server, _ = _start(lambda environ, start_response: [])
    ours, theirs = socket.socketpair()
    try:
        (listener,) = server._listeners()
        channel = listener.channel_class(listener, ours, ("127.0.0.1", 1), listener.adj, map={})
        assert not channel.writable()  # nothing to send

        channel.total_outbufs_len = 345  # a response waiting to be sent
        assert channel.writable()  # no request running: the loop sends it

        channel.requests = [object()]  # ... while a request's task is running
        assert not channel.writable()

        channel.total_outbufs_len = listener.adj.outbuf_high_watermark + 1
        assert channel.writable()  # the task waits for the loop to drain the buffer

        channel.total_outbufs_len = 345
        channel.close_when_flushed = True
        assert channel.writable()
    finally:
        ours.close()
        theirs.close()
        server.stop(timeout=TIMEOUT)
