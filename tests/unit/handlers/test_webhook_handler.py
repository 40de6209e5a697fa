"""webhook against real HTTP(S) receivers on 127.0.0.1 (see conftest.py), allowed on
purpose through `allow_hosts`: the default policy refuses them (test_webhook_destinations)."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from typing import Any

import pytest

from tests.unit.handlers.conftest import TLS_NAME, FakeResolver, Receiver
from workstream.errors import InvalidPayload
from workstream.handlers import Handler, HandlerTable
from workstream.handlers.webhook import (
    WebhookError,
    make_webhook_handler,
    validate_webhook_payload,
)
from workstream.jobs.model import JobContext

JOB = JobContext("5e0c2a7d-1f3b-4d6e-8a9b-0c1d2e3f4a5b", "webhook", 2, 3, 1_700_000_000.0)


def local_handler(**options: Any) -> Handler:
    """A webhook handler allowed to reach the test receivers on 127.0.0.1."""
    return make_webhook_handler(allow_hosts=["127.0.0.1"], **options)


def send(payload: Any) -> Any:
    return local_handler().fn(payload, JOB)


def test_2xx_completes_with_the_status_only(receiver: Receiver) -> None:
    payload = {"url": f"{receiver.url}/ok", "body": {"order": 42, "items": ["a", "é"]}}
    result = send(payload)

    assert result == {"status": 200}
    [request] = receiver.requests
    assert request.path == "/ok"
    assert json.loads(request.body) == {"order": 42, "items": ["a", "é"]}
    assert request.headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "WorkStream-webhook"
    assert request.headers["X-WorkStream-Job-Id"] == JOB.id
    assert request.headers["X-WorkStream-Attempt"] == "2"


def test_return_body_keeps_the_answer_in_the_result(receiver: Receiver) -> None:
    payload = {
        "url": f"{receiver.url}/created",
        "headers": {"Authorization": "Bearer t0k"},
        "return_body": True,
    }
    result = send(payload)

    assert result == {"status": 201, "body": '{"ok": "sí"}'}
    [request] = receiver.requests
    assert request.body == b"null"
    assert request.headers["Authorization"] == "Bearer t0k"


def test_the_returned_body_is_cut_at_2000_characters(receiver: Receiver) -> None:
    result = send({"url": f"{receiver.url}/big", "return_body": True})
    assert result == {"status": 200, "body": "x" * 2000}


def test_500_fails_the_attempt_without_the_query_string(receiver: Receiver) -> None:
    with pytest.raises(WebhookError) as caught:
        send({"url": f"{receiver.url}/fail?token=hunter2"})

    assert str(caught.value) == f"HTTP 500 from {receiver.url}"
    assert "hunter2" not in str(caught.value)
    assert len(receiver.requests) == 1


def test_404_fails_the_attempt(receiver: Receiver) -> None:
    with pytest.raises(WebhookError, match="HTTP 404"):
        send({"url": f"{receiver.url}/nowhere"})


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    with pytest.raises(WebhookError, match=r"HTTP 302 .*not followed"):
        send({"url": f"{receiver.url}/redirect"})

    assert [r.path for r in receiver.requests] == ["/redirect"]


def test_a_stalled_receiver_fails_the_attempt_at_the_payload_timeout(receiver: Receiver) -> None:
    with pytest.raises(WebhookError, match=r"no answer from .* within 0\.3s"):
        send({"url": f"{receiver.url}/stall", "timeout": 0.3})
    assert len(receiver.requests) == 1


def test_one_deadline_bounds_the_whole_request(receiver: Receiver) -> None:
    """Each read gets a byte within 0.1 s, so a per-read timeout never fires; the one
    deadline for the whole request does."""
    started = time.monotonic()
    with pytest.raises(WebhookError, match=r"no answer from .* within 0\.5s"):
        send({"url": f"{receiver.url}/drip", "timeout": 0.5})
    assert time.monotonic() - started < 2.0


def test_a_slow_resolver_counts_against_the_deadline(receiver: Receiver) -> None:
    resolver = FakeResolver({"slow.example": ["127.0.0.1"]}, delay=2.0)
    handler = make_webhook_handler(allow_hosts=["127.0.0.1"], resolver=resolver)
    started = time.monotonic()
    with pytest.raises(WebhookError, match="could not connect"):
        handler.fn({"url": f"http://slow.example:{receiver.port}/ok", "timeout": 0.3}, JOB)
    assert time.monotonic() - started < 1.5
    assert receiver.requests == []


def test_nothing_listening_says_only_could_not_connect(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # closed again: nothing listens there
    caplog.set_level(logging.WARNING, logger="workstream.handlers.webhook")
    with pytest.raises(WebhookError) as caught:
        send({"url": f"http://127.0.0.1:{port}/hook?secret=x", "timeout": 5})

    assert str(caught.value) == f"could not connect to http://127.0.0.1:{port}"
    [record] = caplog.records
    assert "refused" in record.getMessage().lower()  # the detail is in the log
    assert "secret" not in record.getMessage()


def test_non_ascii_path_and_query_are_sent_percent_encoded(receiver: Receiver) -> None:
    result = send({"url": f"{receiver.url}/ok/ünï?name=Grüße&x=%41#frag"})

    assert result == {"status": 200}
    [request] = receiver.requests
    assert request.path == "/ok/%C3%BCn%C3%AF?name=Gr%C3%BC%C3%9Fe&x=%41"


def test_a_name_is_resolved_once_and_the_checked_address_is_used(receiver: Receiver) -> None:
    """The second answer (an address the policy refuses) is never asked for: the
    connection goes to the address that was checked."""
    resolver = FakeResolver({"hooks.example": [["127.0.0.1"], ["10.0.0.1"]]})
    handler = make_webhook_handler(allow_hosts=["127.0.0.1"], resolver=resolver)

    result = handler.fn({"url": f"http://hooks.example:{receiver.port}/ok"}, JOB)

    assert result == {"status": 200}
    assert resolver.calls == ["hooks.example"]
    [request] = receiver.requests
    assert request.headers["Host"] == f"hooks.example:{receiver.port}"


def test_https_checks_the_certificate_against_the_host_name(
    tls_receiver: Receiver, client_tls: ssl.SSLContext
) -> None:
    resolver = FakeResolver({TLS_NAME: ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    handler = make_webhook_handler(
        allow_hosts=[TLS_NAME, "other.test"], resolver=resolver, tls_context=client_tls
    )

    result = handler.fn({"url": f"https://{TLS_NAME}:{tls_receiver.port}/ok"}, JOB)
    assert result == {"status": 200}
    [request] = tls_receiver.requests
    assert request.headers["Host"] == f"{TLS_NAME}:{tls_receiver.port}"

    # Same address, another name: the certificate does not match, nothing is sent.
    with pytest.raises(WebhookError, match=r"could not connect to https://other\.test"):
        handler.fn({"url": f"https://other.test:{tls_receiver.port}/ok"}, JOB)
    assert len(tls_receiver.requests) == 1


def test_https_refuses_an_untrusted_certificate(tls_receiver: Receiver) -> None:
    resolver = FakeResolver({TLS_NAME: ["127.0.0.1"]})
    handler = make_webhook_handler(allow_hosts=[TLS_NAME], resolver=resolver)  # system CAs
    with pytest.raises(WebhookError, match="could not connect"):
        handler.fn({"url": f"https://{TLS_NAME}:{tls_receiver.port}/ok"}, JOB)
    assert tls_receiver.requests == []


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
        ({"url": "https://bücher.example/hook"}, "xn-- form"),
        ({"url": "https://example.com/\ud800"}, "not valid Unicode"),
        ({"url": "https://exa%41mple.com/"}, "valid host"),
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
        ({"url": "https://example.com", "return_body": "yes"}, "true or false"),
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
            "return_body": True,
        }
    )
    validate_webhook_payload({"url": "https://xn--bcher-kva.example/ünï?q=é"})
    validate_webhook_payload({"url": "http://[2001:4860::8888]:8080/hook"})


def test_submission_refuses_a_bad_payload_with_the_validators_message() -> None:
    table = HandlerTable([make_webhook_handler()])
    with pytest.raises(InvalidPayload, match="payload for 'webhook': 'url' must start with"):
        table.check_submission("webhook", {"url": "gopher://example.com"})


def test_submission_refuses_a_non_ascii_host() -> None:
    table = HandlerTable([make_webhook_handler()])
    with pytest.raises(InvalidPayload, match="xn--"):
        table.check_submission("webhook", {"url": "https://bücher.example/"})


def test_handler_declares_its_timeout_above_the_largest_request_timeout() -> None:
    handler = make_webhook_handler()
    assert handler.type == "webhook"
    assert handler.timeout == 70
    assert handler.validate is not None
