"""Scenarios 12-15 (bad input) against the real server, over raw sockets: every case gets a
4xx with the JSON error body, and nothing is stored. One server serves the whole module;
at the end the database must hold only the jobs submitted on purpose.

Also in tests/unit/http (through falcon.testing and the HttpServer on a fake engine): the
same families one by one, and the exact error messages.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.checker import Figures
from tests.reliability.conftest import COLLECTOR
from tests.reliability.harness import Harness, report

ONE_MIB = 1_048_576
MAX_HEADER_BYTES = 64 * 1024  # workstream.http.server.MAX_HEADER_BYTES
SUBMIT = b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    world = Harness(Path(tmp_path_factory.mktemp("bad-input")), collector=COLLECTOR)
    world.start(HTTP_CHANNEL_TIMEOUT="2s")
    yield world
    world.stop_all()


def exchange(harness: Harness, raw: bytes, timeout: float = 15.0) -> tuple[int, dict, bytes]:
    """Send raw bytes, read one response; record it for the hygiene scan."""
    port = harness.port()
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may answer and close before reading everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        headers = dict(response.getheaders())
    COLLECTOR.add(f"raw {raw[:40]!r}", response.status, headers, body)
    return response.status, headers, body


def post(body: bytes, content_type: str | None = "application/json", extra: bytes = b"") -> bytes:
    head = SUBMIT
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n".encode()
    return head + f"Content-Length: {len(body)}\r\n".encode() + extra + b"\r\n" + body


def assert_refused(status: int, headers: dict, body: bytes, expected: int) -> None:
    assert status == expected, body[:300]
    assert headers.get("Content-Type") == "application/json"
    parsed = json.loads(body)
    assert set(parsed) == {"error", "code"}, parsed


# -- 12. malformed and hostile JSON ----------------------------------------------------------

DEEP = b'{"type": "echo", "payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
# 100,000 keys in under 1 MiB (hex keys, no spaces): refused for its unknown fields.
MANY_KEYS = ("{" + ",".join(f'"{n:x}":0' for n in range(100_000)) + "}").encode()
MALFORMED = {
    "truncated": b'{"type": "echo", "payload": {"a": ',
    "trailing comma": b'{"type": "echo",}',
    "empty": b"",
    "whitespace": b"   ",
    "top-level array": b'[{"type": "echo"}]',
    "top-level string": b'"echo"',
    "top-level number": b"42",
    "top-level null": b"null",
    "invalid utf-8": b'{"type": "echo", "payload": "\xff\xfe"}',
    "overlong utf-8": b'{"type": "echo", "payload": "\xc0\xaf"}',
    "lone surrogate": b'{"type": "echo", "payload": "\\ud800"}',
    "lone surrogate key": b'{"type": "echo", "payload": {"\\udfff": 1}}',
    "NaN": b'{"type": "echo", "payload": NaN}',
    "Infinity": b'{"type": "echo", "payload": -Infinity}',
    "huge float": b'{"type": "echo", "payload": 1e999}',
    "huge integer": b'{"type": "echo", "payload": ' + b"9" * 5000 + b"}",
    "deep nesting": DEEP,
    "100000 keys": MANY_KEYS,
    "byte order mark": b'\xef\xbb\xbf{"type": "echo"}',
    "single quotes": b"{'type': 'echo'}",
    "comment": b'{"type": "echo" /* c */}',
    "duplicate-ish garbage": b'{"type": "echo"}{"type": "echo"}',
    "control character": b'{"type": "ec\x01ho"}',
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_json_is_a_400(server: Harness, case: str) -> None:
    started = time.monotonic()
    status, headers, body = exchange(server, post(MALFORMED[case]))
    assert_refused(status, headers, body, 400)
    assert time.monotonic() - started < 10


# -- 13. bodies ------------------------------------------------------------------------------


def _sized(total: int) -> bytes:
    head, tail = b'{"type": "echo", "payload": "', b'"}'
    return head + b"x" * (total - len(head) - len(tail)) + tail


def test_a_body_one_byte_over_the_limit_is_a_413_before_it_is_read(server: Harness) -> None:
    # The answer comes once the headers are in; the body is not sent (bytes the server
    # never reads would make the kernel reset the connection, losing the answer).
    raw = post(_sized(ONE_MIB + 1))
    assert_refused(*exchange(server, raw[: raw.index(b"\r\n\r\n") + 4]), 413)


def test_a_huge_declared_body_is_refused_before_it_is_sent(server: Harness) -> None:
    raw = SUBMIT + b"Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n"
    assert_refused(*exchange(server, raw), 413)


def test_a_chunked_body_past_the_limit_is_a_413(server: Harness) -> None:
    body = _sized(ONE_MIB + 100)
    chunks = b"".join(
        f"{len(body[i : i + 8192]):x}\r\n".encode() + body[i : i + 8192] + b"\r\n"
        for i in range(0, len(body), 8192)
    )
    raw = (
        SUBMIT
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    assert_refused(*exchange(server, raw), 413)


def test_a_content_length_shorter_than_the_body_is_refused(server: Harness) -> None:
    body = b'{"type": "echo", "payload": {"n": 1}}'
    raw = SUBMIT + b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n" + body
    assert_refused(*exchange(server, raw), 400)  # the first 10 bytes are not JSON


def test_a_content_length_longer_than_the_body_stalls_and_is_closed(server: Harness) -> None:
    port = server.port()
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(post(b'{"type": "echo"}', extra=b"")[:-2] + b"")  # drop 2 bytes
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the channel timeout (2 s), unanswered
        assert time.monotonic() - started < 10


def test_an_unknown_transfer_coding_is_a_400(server: Harness) -> None:
    raw = SUBMIT + b"Content-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n"
    assert_refused(*exchange(server, raw), 400)


def test_both_content_length_and_chunked_is_refused(server: Harness) -> None:
    raw = (
        SUBMIT + b"Content-Type: application/json\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert_refused(*exchange(server, raw), 400)


# -- 14. content types and headers -----------------------------------------------------------

CONTENT_TYPES = [
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/jsonx",
    "application/json; foo=bar",
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_a_content_type_other_than_json_is_a_415(server: Harness, content_type: str) -> None:
    assert_refused(*exchange(server, post(b'{"type": "echo"}', content_type)), 415)


def _exactly_at_the_header_limit(headers: list[bytes]) -> bytes:
    """A request whose header block is exactly 64 KiB: the server reads every byte before
    refusing it (unread bytes would make the kernel reset the connection)."""
    head = SUBMIT + b"".join(headers)
    end = b"X-Pad: "
    pad = MAX_HEADER_BYTES - len(head) - len(end) - 4
    assert pad > 0
    return head + end + b"p" * pad + b"\r\n\r\n"


def test_headers_too_large_are_a_431(server: Harness) -> None:
    raw = _exactly_at_the_header_limit([b"X-Filler: " + b"a" * 60_000 + b"\r\n"])
    assert_refused(*exchange(server, raw), 431)


def test_many_small_headers_too_large_are_a_431(server: Harness) -> None:
    raw = _exactly_at_the_header_limit([f"X-H{n}: {'v' * 40}\r\n".encode() for n in range(1000)])
    assert_refused(*exchange(server, raw), 431)


# -- 15. unknown types, wrong field types, out-of-range options ------------------------------

INVALID_FIELDS = {
    "unknown type": ({"type": "no_such_type"}, 422),
    "missing type": ({"payload": {}}, 400),
    "empty type": ({"type": ""}, 400),
    "blank type": ({"type": "   "}, 400),
    "type not a string": ({"type": 7}, 400),
    "type a list": ({"type": ["echo"]}, 400),
    "type too long": ({"type": "e" * 10_000}, 400),
    "unknown field": ({"type": "echo", "urgency": 1}, 400),
    "priority too low": ({"type": "echo", "priority": -1}, 400),
    "priority too high": ({"type": "echo", "priority": 10}, 400),
    "priority a string": ({"type": "echo", "priority": "high"}, 400),
    "max_retries negative": ({"type": "echo", "max_retries": -1}, 400),
    "max_retries huge": ({"type": "echo", "max_retries": 10**12}, 400),
    "max_retries a string": ({"type": "echo", "max_retries": "3"}, 400),
    "max_retries a float": ({"type": "echo", "max_retries": 1.5}, 400),
    "max_retries a bool": ({"type": "echo", "max_retries": True}, 400),
    "delay negative": ({"type": "echo", "delay": -1}, 400),
    "delay huge": ({"type": "echo", "delay": 10**12}, 400),
    "delay garbage": ({"type": "echo", "delay": "soon"}, 400),
    "delay and run_at": ({"type": "echo", "delay": 1, "run_at": "2030-01-01T00:00:00Z"}, 400),
    "run_at garbage": ({"type": "echo", "run_at": "tomorrow"}, 400),
    "run_at a number": ({"type": "echo", "run_at": 1700000000}, 400),
    "batch not a list": ({"jobs": {"type": "echo"}}, 400),
}


@pytest.mark.parametrize("case", sorted(INVALID_FIELDS))
def test_invalid_fields_are_refused_at_submission(server: Harness, case: str) -> None:
    document, expected = INVALID_FIELDS[case]
    path = b"/jobs/batch" if "jobs" in document else b"/jobs"
    body = json.dumps(document).encode()
    raw = post(body).replace(b"POST /jobs ", b"POST " + path + b" ", 1)
    assert_refused(*exchange(server, raw), expected)


def test_a_batch_with_one_bad_job_stores_none(server: Harness) -> None:
    document = {"jobs": [{"type": "echo"}, {"type": "echo"}, {"type": "nope"}]}
    raw = post(json.dumps(document).encode()).replace(b"POST /jobs ", b"POST /jobs/batch ", 1)
    status, headers, body = exchange(server, raw)
    assert_refused(status, headers, body, 422)
    assert "jobs[2]" in json.loads(body)["error"]


def test_zz_nothing_was_stored_and_the_server_is_healthy(server: Harness) -> None:
    """Runs last in this module (name order within the file is definition order)."""
    status, _, health = server.request("GET", "/health")
    jobs = server.jobs()
    refused = [r for r in COLLECTOR.responses if r.where.startswith("raw")]
    fig = Figures("bad_input", submitted=len(refused), shed=0)
    fig.illegal = len(jobs)  # nothing may have been stored
    fig.other = sum(1 for r in refused if r.status >= 500)
    fig.extra.update(stored=len(jobs), http_5xx=fig.other, health=status)
    report(fig)
    assert status == 200 and health["status"] == "ok"
    assert jobs == []
    assert fig.other == 0
