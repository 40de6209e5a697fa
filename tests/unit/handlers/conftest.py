"""A webhook receiver on 127.0.0.1 (http.server, port 0, in a thread), plain or TLS.

Webhook tests send traffic to nowhere else: the receivers below are the only listening
sockets, and names are resolved by resolvers the tests pass in, never by DNS.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

STALL_BOUND = 10.0  # longest a stalled request thread may wait for its release
TLS_NAME = "hooks.test"  # the name in the test certificate


@dataclass
class Received:
    path: str
    headers: Message  # looked up case-insensitively, as HTTP header names are
    body: bytes


@dataclass
class Receiver:
    """What the test server saw, and the switch that releases a stalled request."""

    url: str
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    """Routes by path: /ok (200), /created (201, JSON), /big (long answer), /fail (500),
    /redirect (302), /stall (answers once released), /drip (headers one byte at a time)."""

    receiver: Receiver
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        self.receiver.requests.append(Received(self.path, self.headers, body))
        if path == "/ok" or path.startswith("/ok/"):
            self._answer(200, b"thanks")
        elif path == "/created":
            self._answer(201, '{"ok": "sí"}'.encode(), "application/json; charset=utf-8")
        elif path == "/big":
            self._answer(200, b"x" * 10_000)
        elif path == "/fail":
            self._answer(500, b"broken")
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/stall":
            self.receiver.release.wait(STALL_BOUND)
            self._answer(200, b"late")
        elif path == "/drip":
            self._drip()
        else:
            self._answer(404, b"no such hook")

    def _drip(self) -> None:
        """A status line, then a header one byte every 0.1 s: every read gets data well
        within any timeout, yet the answer never ends (until released)."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self.wfile.flush()
        for byte in b"X-Slow: " + b"a" * 200:
            if self.receiver.release.wait(0.1):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


def _serve(wrap: Callable[[Any], Any] | None, scheme: str) -> Iterator[Receiver]:
    state = Receiver("")
    handler_class = type("BoundHandler", (_Handler,), {"receiver": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    if wrap is not None:
        server.socket = wrap(server.socket)
    host, port = server.server_address[:2]
    state.port = port
    state.url = f"{scheme}://{host}:{port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-test-server"
    )
    thread.start()
    try:
        yield state
    finally:
        state.release.set()  # free a stalled request thread before shutting down
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(None, "http")


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for `hooks.test` and 127.0.0.1 (openssl command line)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            *("req", "-x509", "-nodes", "-days", "2"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", str(key), "-out", str(cert)),
            *("-subj", f"/CN={TLS_NAME}", "-addext", f"subjectAltName=DNS:{TLS_NAME},IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Certificate(cert, key)


@pytest.fixture
def tls_receiver(certificate: Certificate) -> Iterator[Receiver]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    yield from _serve(lambda sock: context.wrap_socket(sock, server_side=True), "https")


@pytest.fixture
def client_tls(certificate: Certificate) -> ssl.SSLContext:
    """What the webhook handler trusts in TLS tests: the test certificate only."""
    return ssl.create_default_context(cafile=str(certificate.cert))


class FakeResolver:
    """Names to addresses, for tests: counts its calls, never asks DNS."""

    def __init__(self, answers: dict[str, list[list[str]] | list[str]], delay: float = 0.0):
        self.answers = answers
        self.delay = delay
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if self.delay:
            time.sleep(self.delay)
        answer = self.answers.get(host)
        if answer is None:
            raise OSError(f"[Errno -2] Name or service not known: {host!r}")
        if answer and isinstance(answer[0], list):  # one answer per call, in turn
            return list(answer[min(len(self.calls), len(answer)) - 1])
        return list(answer)  # type: ignore[arg-type]
