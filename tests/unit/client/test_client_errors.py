"""Error answers and transport failures become the client's exceptions."""

from __future__ import annotations

import pickle
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from workstream.client import (
    ApiError,
    Client,
    NotFoundError,
    QueueFullError,
    ServerUnreachable,
    UnauthorizedError,
    WaitTimeout,
)
from workstream.errors import WorkStreamError


def test_400_bad_request(client) -> None:
    with pytest.raises(ApiError) as caught:
        client.submit("   ")
    error = caught.value
    assert (error.status, error.code) == (400, "invalid_request")
    assert error.message == "type must be a non-empty string"
    assert str(error) == error.message
    assert error.body == {"error": error.message, "code": "invalid_request"}
    assert error.retry_after is None
    assert type(error) is ApiError
    assert isinstance(error, WorkStreamError)


def test_400_in_a_batch_names_the_index(client, stub) -> None:
    with pytest.raises(ApiError, match=r"jobs\[1\]") as caught:
        client.submit_many([{"type": "echo"}, {"type": ""}])
    assert caught.value.status == 400
    assert stub.jobs == {}


def test_404_unknown_job(client) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get("3c1f5a43-0000-4000-8000-000000000000")
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert isinstance(caught.value, ApiError)


def test_404_on_cancel_and_retry(client) -> None:
    with pytest.raises(NotFoundError):
        client.cancel("nope")
    with pytest.raises(NotFoundError):
        client.retry("nope")


def test_409_wrong_state(client, stub) -> None:
    job = stub.add_job(status="completed", run_at=None)
    with pytest.raises(ApiError) as caught:
        client.retry(job["id"])
    assert (caught.value.status, caught.value.code) == (409, "invalid_state")
    with pytest.raises(ApiError, match="cancel a completed job"):
        client.cancel(job["id"])


def test_409_idempotency_key_reused_with_another_body(client) -> None:
    client.submit("echo", {"n": 1}, idempotency_key="k")
    with pytest.raises(ApiError) as caught:
        client.submit("echo", {"n": 2}, idempotency_key="k")
    assert (caught.value.status, caught.value.code) == (409, "idempotency_key_reused")


def test_422_unknown_type(client) -> None:
    with pytest.raises(ApiError) as caught:
        client.submit("resize_image")
    assert (caught.value.status, caught.value.code) == (422, "unknown_job_type")
    assert "echo" in caught.value.message  # the server lists the known types


def test_429_queue_full_with_retry_after(client, stub) -> None:
    stub.capacity = 1
    client.submit("echo")
    with pytest.raises(QueueFullError) as caught:
        client.submit("echo")
    error = caught.value
    assert (error.status, error.code, error.retry_after) == (429, "queue_full", 7)
    with pytest.raises(QueueFullError):
        client.submit_many([{"type": "echo"}])
    assert len(stub.jobs) == 1


def test_retry_after_as_an_http_date(client, stub) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    stub.script(
        "POST",
        "/jobs",
        429,
        {"error": "full", "code": "queue_full"},
        headers={"Retry-After": when},
    )
    with pytest.raises(QueueFullError) as caught:
        client.submit("echo")
    assert 100 <= caught.value.retry_after <= 120


def test_503_shutting_down(client, stub) -> None:
    stub.script(
        "POST",
        "/jobs",
        503,
        {"error": "shutting down", "code": "shutting_down"},
        headers={"Retry-After": "3"},
    )
    with pytest.raises(ApiError) as caught:
        client.submit("echo")
    assert (caught.value.status, caught.value.code) == (503, "shutting_down")
    assert caught.value.retry_after == 3


def test_401_wrong_or_missing_token(stub) -> None:
    stub.token = "right"
    for token in (None, "wrong"):
        with pytest.raises(UnauthorizedError) as caught:
            Client(stub.url, token=token).list()
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    assert Client(stub.url).health()["status"] == "ok"  # /health needs no token


def test_405_keeps_the_api_code(client) -> None:
    with pytest.raises(ApiError) as caught:
        client.get("batch")
    assert (caught.value.status, caught.value.code) == (405, "method_not_allowed")


def test_non_json_error_body(client, stub) -> None:
    page = b"<html><body>502 Bad Gateway</body></html>"
    stub.script("GET", "/jobs", 502, page, headers={"Content-Type": "text/html"})
    with pytest.raises(ApiError) as caught:
        client.list()
    error = caught.value
    assert (error.status, error.code) == (502, "http_502")
    assert error.message == "HTTP 502 Bad Gateway"
    assert error.body == page.decode()


def test_json_error_body_without_the_api_shape(client, stub) -> None:
    stub.script("GET", "/jobs", 500, ["unexpected"])
    with pytest.raises(ApiError) as caught:
        client.list()
    assert (caught.value.code, caught.value.body) == ("http_500", ["unexpected"])


def test_2xx_that_is_not_json(client, stub) -> None:
    stub.script("GET", "/health", 200, b"hello, I am not WorkStream")
    with pytest.raises(ApiError, match="not JSON") as caught:
        client.health()
    assert caught.value.code == "invalid_response"


def test_errors_survive_pickling(client, stub) -> None:
    stub.capacity = 0
    with pytest.raises(QueueFullError) as caught:
        client.submit("echo")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is QueueFullError
    assert (copy.status, copy.code, copy.message, copy.retry_after) == (
        429,
        "queue_full",
        "the queue is full",
        7,
    )
    timeout = pickle.loads(pickle.dumps(WaitTimeout("j", {"status": "pending"}, 1.0, "slow")))
    assert (timeout.job_id, timeout.job, str(timeout)) == (
        "j",
        {"status": "pending"},
        "job j did not finish within 1s (slow)",
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_unreachable_names_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ServerUnreachable, match=r"127\.0\.0\.1") as caught:
        Client(url, timeout=2).list()
    assert url in str(caught.value)
    assert isinstance(caught.value, ConnectionError)
    assert isinstance(caught.value, WorkStreamError)
    assert caught.value.code == "server_unreachable"


def test_connection_dropped_without_answer(client, stub) -> None:
    stub.script("GET", "/jobs", action="drop")
    with pytest.raises(ServerUnreachable, match=stub.url):
        client.list()


def test_silent_server_times_out_within_the_client_timeout(stub) -> None:
    stub.script("POST", "/jobs", action="hang")
    with pytest.raises(ServerUnreachable, match=r"did not answer within 0.2s; the request may"):
        Client(stub.url, timeout=0.2).submit("echo")
