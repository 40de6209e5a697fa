"""webhook against a real HTTP server (http.server on 127.0.0.1, port 0, in a thread)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from workstream.errors import InvalidPayload
from workstream.handlers import HandlerTable
from workstream.handlers.webhook import (
    WebhookError,
    make_webhook_handler,
    validate_webhook_payload,
    webhook,
)
from workstream.jobs.model import JobContext

JOB = JobContext("5e0c2a7d-1f3b-4d6e-8a9b-0c1d2e3f4a5b", "webhook", 2, 3, 1_700_000_000.0)
STALL_BOUND = 10.0  # longest a stalled request thread may wait for its release


@dataclass
class Received:
    path: str
    headers: Message  # looked up case-insensitively, as HTTP header names are
    body: bytes


@dataclass
class Receiver:
    """What the test server saw, and the switch that releases a stalled request."""

    url: str
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    """Routes by path: /ok (200), /fail (500), /redirect (302), /big (long answer),
    /stall (answers only once the test releases it)."""

    receiver: Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        self.receiver.requests.append(Received(self.path, self.headers, body))
        if path == "/ok":
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
        else:
            self._answer(404, b"no such hook")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would intercept the requests to 127.0.0.1."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")
    handler_class = type("BoundHandler", (_Handler,), {"receiver": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    host, port = server.server_address[:2]
    state.url = f"http://{host}:{port}"
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


def test_2xx_completes_with_status_and_body(receiver: Receiver) -> None:
    payload = {"url": f"{receiver.url}/ok", "body": {"order": 42, "items": ["a", "é"]}}
    result = make_webhook_handler().fn(payload, JOB)

    assert result == {"status": 200, "body": "thanks"}
    [request] = receiver.requests
    assert request.path == "/ok"
    assert json.loads(request.body) == {"order": 42, "items": ["a", "é"]}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "WorkStream-webhook"
    assert request.headers["X-WorkStream-Job-Id"] == JOB.id
    assert request.headers["X-WorkStream-Attempt"] == "2"


def test_body_defaults_to_null_and_custom_headers_are_sent(receiver: Receiver) -> None:
    payload = {"url": f"{receiver.url}/created", "headers": {"Authorization": "Bearer t0k"}}
    result = webhook(payload, JOB)

    assert result == {"status": 201, "body": '{"ok": "sí"}'}
    [request] = receiver.requests
    assert request.body == b"null"
    assert request.headers["Authorization"] == "Bearer t0k"


def test_the_answer_body_is_cut_at_2000_characters(receiver: Receiver) -> None:
    result = webhook({"url": f"{receiver.url}/big"}, JOB)
    assert result == {"status": 200, "body": "x" * 2000}


def test_500_fails_the_attempt_without_the_query_string(receiver: Receiver) -> None:
    with pytest.raises(WebhookError) as caught:
        webhook({"url": f"{receiver.url}/fail?token=hunter2"}, JOB)

    assert str(caught.value) == f"HTTP 500 from {receiver.url}"
    assert "hunter2" not in str(caught.value)
    assert len(receiver.requests) == 1


def test_404_fails_the_attempt(receiver: Receiver) -> None:
    with pytest.raises(WebhookError, match="HTTP 404"):
        webhook({"url": f"{receiver.url}/nowhere"}, JOB)


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    with pytest.raises(WebhookError, match=r"HTTP 302 .*not followed"):
        webhook({"url": f"{receiver.url}/redirect"}, JOB)

    assert [r.path for r in receiver.requests] == ["/redirect"]


def test_a_stalled_receiver_fails_the_attempt_at_the_payload_timeout(receiver: Receiver) -> None:
    with pytest.raises(WebhookError, match=r"no answer from .* within 0\.3s"):
        webhook({"url": f"{receiver.url}/stall", "timeout": 0.3}, JOB)
    assert len(receiver.requests) == 1


def test_nothing_listening_fails_the_attempt() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # closed again: nothing listens there
    with pytest.raises(WebhookError, match=f"cannot reach http://127.0.0.1:{port}"):
        webhook({"url": f"http://127.0.0.1:{port}/hook?secret=x", "timeout": 5}, JOB)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("https://example.com", "expected an object"),
        ({}, "'url' is required"),
        ({"url": 5}, "must be a string"),
        ({"url": ""}, "must not be empty"),
        ({"url": "ftp://example.com/x"}, "http:// or https://"),
        ({"url": "file:///etc/passwd"}, "http:// or https://"),
        ({"url": "example.com/hook"}, "http:// or https://"),
        ({"url": "http:///path-only"}, "must name a host"),
        ({"url": "https://example.com/" + "a" * 2048}, "longer than 2048"),
        ({"url": "https://exa mple.com/"}, "spaces or control"),
        ({"url": "https://example.com/\r\nX-Evil: 1"}, "spaces or control"),
        ({"url": "https://example.com:99999/"}, "not a valid URL"),
        ({"url": "https://user:pw@example.com/"}, "credentials"),
        ({"url": "https://example.com", "method": "GET"}, "unknown field 'method'"),
        ({"url": "https://example.com", "headers": ["X-A: 1"]}, "'headers' must be an object"),
        ({"url": "https://example.com", "headers": {"X-A": 1}}, "must be a string"),
        ({"url": "https://example.com", "headers": {"X-A": "1\r\nX-B: 2"}}, "line breaks"),
        ({"url": "https://example.com", "headers": {"X-A\r\nX-B": "2"}}, "not a valid header"),
        ({"url": "https://example.com", "headers": {"X A": "2"}}, "not a valid header"),
        ({"url": "https://example.com", "headers": {"content-type": "text/xml"}}, "cannot be"),
        ({"url": "https://example.com", "headers": {"Content-Length": "0"}}, "cannot be"),
        ({"url": "https://example.com", "headers": {"HOST": "evil.test"}}, "cannot be"),
        ({"url": "https://example.com", "headers": {"X-WorkStream-Job-Id": "x"}}, "cannot be"),
        ({"url": "https://example.com", "timeout": 0}, "'timeout' must be more than 0"),
        ({"url": "https://example.com", "timeout": 61}, "at most 60"),
        ({"url": "https://example.com", "timeout": "5s"}, "number of seconds"),
        ({"url": "https://example.com", "timeout": True}, "number of seconds"),
        ({"url": "https://example.com", "body": float("nan")}, "JSON value"),
    ],
)
def test_validation_refuses(payload: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_webhook_payload(payload)


def test_validation_accepts_a_full_payload() -> None:
    validate_webhook_payload(
        {
            "url": "https://hooks.example.com:8443/in?k=v",
            "body": [1, {"a": None}],
            "headers": {"Authorization": "Bearer x", "User-Agent": "mine"},
            "timeout": 60,
        }
    )
    validate_webhook_payload({"url": "http://[::1]:8080/hook"})


def test_submission_refuses_a_bad_payload_with_the_validators_message() -> None:
    table = HandlerTable([make_webhook_handler()])
    with pytest.raises(InvalidPayload, match="payload for 'webhook': 'url' must start with"):
        table.check_submission("webhook", {"url": "gopher://example.com"})


def test_handler_declares_its_timeout_above_the_largest_request_timeout() -> None:
    handler = make_webhook_handler()
    assert handler.type == "webhook"
    assert handler.timeout == 70
    assert handler.validate is validate_webhook_payload
