"""What the client sends and how it reads successful answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from workstream.client import Client, NotFoundError


def test_default_url_and_trailing_slash() -> None:
    assert Client().url == "http://127.0.0.1:8080"
    assert Client("http://example.test:9000/").url == "http://example.test:9000"
    assert Client("https://example.test/ws/").url == "https://example.test/ws"


@pytest.mark.parametrize(
    "url",
    ["ftp://example.test", "file:///tmp/x", "127.0.0.1:8080", "example.test", "http://", ""],
)
def test_refuses_urls_that_are_not_http(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        Client(url)


def test_refuses_bad_port_and_timeout() -> None:
    with pytest.raises(ValueError):
        Client("http://example.test:99999")
    with pytest.raises(ValueError, match="timeout"):
        Client(timeout=0)


def test_trailing_slash_does_not_double_slashes(stub) -> None:
    job = Client(stub.url + "/").submit("echo")
    assert Client(stub.url + "/").get(job["id"]) == job
    assert [r.path for r in stub.requests] == ["/jobs", f"/jobs/{job['id']}"]


def test_path_prefix_is_kept(stub) -> None:
    client = Client(stub.url + "/ws/")
    with pytest.raises(NotFoundError):  # the stub serves no prefix; the path sent is the point
        client.list()
    assert stub.requests[0].target == "/ws/jobs"


def test_submit_sends_json_and_returns_the_accepted_job(client, stub) -> None:
    job = client.submit("echo", {"hello": "wörld"}, max_retries=5, delay=2)
    assert job["status"] == "pending"
    assert job["type"] == "echo"
    assert job["payload"] == {"hello": "wörld"}
    assert job["max_retries"] == 5
    (request,) = stub.sent("POST", "/jobs")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.json() == {
        "type": "echo",
        "payload": {"hello": "wörld"},
        "max_retries": 5,
        "delay": 2,
    }
    assert "idempotency-key" not in request.headers
    assert "authorization" not in request.headers


def test_submit_leaves_out_unset_fields(client, stub) -> None:
    client.submit("echo")
    assert stub.sent("POST", "/jobs")[0].json() == {"type": "echo"}


@pytest.mark.parametrize(
    ("delay", "sent"),
    [(1.5, 1.5), ("1m30s", "1m30s"), (timedelta(milliseconds=250), 0.25)],
)
def test_submit_delay_forms(client, stub, delay, sent) -> None:
    client.submit("echo", delay=delay)
    assert stub.sent("POST", "/jobs")[0].json()["delay"] == sent


def test_submit_run_at_datetime_becomes_rfc3339_utc(client, stub) -> None:
    paris = timezone(timedelta(hours=2))
    job = client.submit("echo", run_at=datetime(2030, 1, 2, 5, 4, 5, tzinfo=paris))
    client.submit("echo", run_at="2030-01-02T03:04:05Z")
    first, second = (r.json()["run_at"] for r in stub.sent("POST", "/jobs"))
    assert first == "2030-01-02T03:04:05.000000Z"
    assert job["run_at"] == first
    assert second == "2030-01-02T03:04:05Z"


def test_submit_refuses_naive_run_at_without_sending(client, stub) -> None:
    with pytest.raises(ValueError, match="timezone"):
        client.submit("echo", run_at=datetime(2030, 1, 1))
    assert stub.requests == []


def test_submit_refuses_nan_without_sending(client, stub) -> None:
    with pytest.raises(ValueError):
        client.submit("echo", {"x": float("nan")})
    assert stub.requests == []


def test_idempotency_key_repeat_returns_the_first_job(client, stub) -> None:
    first = client.submit("echo", {"n": 1}, idempotency_key="order-42")
    again = client.submit("echo", {"n": 1}, idempotency_key="order-42")
    assert again == first
    assert len(stub.jobs) == 1
    assert [r.headers["idempotency-key"] for r in stub.sent("POST", "/jobs")] == ["order-42"] * 2


def test_token_is_sent_on_every_request(stub) -> None:
    stub.token = "s3cret"
    client = Client(stub.url, token="s3cret")
    job = client.submit("echo")
    client.submit_many([{"type": "echo"}])
    client.get(job["id"])
    client.list()
    list(client.iter_jobs(page_size=1))
    client.cancel(job["id"])
    client.health()
    client.metrics()
    assert len(stub.requests) >= 9
    assert {r.headers.get("authorization") for r in stub.requests} == {"Bearer s3cret"}


def test_submit_many_sends_one_batch_and_returns_jobs_in_order(client, stub) -> None:
    jobs = client.submit_many(
        [
            {"type": "echo", "payload": 1},
            {"type": "sleep", "payload": {"seconds": 0}, "max_retries": 0},
            {"type": "echo", "run_at": datetime(2030, 1, 1, tzinfo=UTC), "delay": None},
        ]
    )
    assert [(j["type"], j["payload"]) for j in jobs] == [
        ("echo", 1),
        ("sleep", {"seconds": 0}),
        ("echo", None),
    ]
    (request,) = stub.sent()
    assert (request.method, request.path) == ("POST", "/jobs/batch")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "jobs": [
            {"type": "echo", "payload": 1},
            {"type": "sleep", "payload": {"seconds": 0}, "max_retries": 0},
            {"type": "echo", "run_at": "2030-01-01T00:00:00.000000Z"},
        ]
    }


def test_get_returns_the_whole_job(client, stub) -> None:
    job = stub.add_job("echo", payload=[1, 2], status="completed", result=[1, 2], run_at=None)
    assert client.get(job["id"]) == job
    assert stub.sent()[0].target == f"/jobs/{job['id']}"


def test_job_id_is_quoted_into_the_path(client, stub) -> None:
    with pytest.raises(NotFoundError):
        client.get("a/b?c")
    assert stub.requests[0].target == "/jobs/a%2Fb%3Fc"
    with pytest.raises(ValueError):
        client.get("")


def test_list_is_one_page_with_filters(client, stub) -> None:
    for _ in range(3):
        stub.add_job("echo")
    stub.add_job("sleep")
    done = stub.add_job("echo", status="completed", run_at=None)
    assert [j["id"] for j in client.list(status="completed")] == [done["id"]]
    assert len(client.list(type="echo", limit=2)) == 2
    assert len(client.list()) == 5
    targets = [r.target for r in stub.requests]
    assert targets == ["/jobs?status=completed", "/jobs?type=echo&limit=2", "/jobs"]


def test_cancel_and_retry_post_to_their_paths(client, stub) -> None:
    pending = stub.add_job()
    failed = stub.add_job(status="failed", run_at=None, last_error="boom")
    assert client.cancel(pending["id"])["status"] == "cancelled"
    assert client.retry(failed["id"])["status"] == "pending"
    cancel, retry = stub.requests
    assert (cancel.method, cancel.path) == ("POST", f"/jobs/{pending['id']}/cancel")
    assert (retry.method, retry.path) == ("POST", f"/jobs/{failed['id']}/retry")
    assert cancel.headers["content-type"] == "application/json"
    assert json.loads(cancel.body) == {}


def test_health_returns_the_body_for_200_and_503(client, stub) -> None:
    assert client.health() == {"status": "ok", "workers": 10}
    stub.healthy = False
    assert client.health() == {"status": "shutting_down"}


def test_metrics_asks_for_json(client, stub) -> None:
    stub.add_job()
    stub.add_job(status="completed", run_at=None)
    metrics = client.metrics()
    assert metrics["total_jobs_created"] == 2
    assert metrics["queue_size"] == 1
    assert metrics["jobs_completed"] == 1
    assert stub.requests[0].headers["accept"] == "application/json"
