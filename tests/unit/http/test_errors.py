"""The error contract: one body shape for every error, our codes, request ids, hygiene."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
from falcon.testing import create_environ

from tests.unit.http.support import JSON_HEADERS, assert_hygienic, error_code, post_json
from workstream import errors
from workstream.http.app import create_app
from workstream.http.errors import STATUS_BY_CODE, InvalidCursor
from workstream.http.hosts import Forbidden
from workstream.jobs.model import JobStatus

EXPECTED_STATUS = {
    "invalid_request": 400,
    "invalid_json": 400,
    "invalid_payload": 400,
    "invalid_cursor": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "invalid_state": 409,
    "idempotency_key_reused": 409,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "unknown_job_type": 422,
    "queue_full": 429,
    "too_many_scheduled_jobs": 429,
    "shutting_down": 503,
    "storage_unavailable": 503,
    "service_busy": 503,
}


def test_the_status_table_is_the_documented_one():
    assert STATUS_BY_CODE == EXPECTED_STATUS


def test_the_table_covers_every_error_a_request_can_raise():
    raisable = [
        errors.InvalidRequest,
        errors.InvalidJson,
        errors.InvalidPayload,
        InvalidCursor,
        errors.Unauthorized,
        Forbidden,
        errors.NotFound,
        errors.MethodNotAllowed,
        errors.IllegalTransition,
        errors.IdempotencyKeyReused,
        errors.Conflict,
        errors.PayloadTooLarge,
        errors.UnsupportedMediaType,
        errors.UnknownJobType,
        errors.QueueFull,
        errors.ScheduledJobsFull,
        errors.ShuttingDown,
        errors.StorageUnavailable,
        errors.ServiceBusy,
    ]

    assert {cls.code for cls in raisable} == set(STATUS_BY_CODE)


def test_an_unknown_path_is_a_json_404(client):
    assert error_code(client.simulate_get("/nowhere"), 404) == "not_found"
    assert error_code(client.simulate_get("/jobs/a/b/c"), 404) == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/jobs", "GET, POST"),
        ("PUT", "/jobs/abc", "GET"),
        ("GET", "/jobs/abc/cancel", "POST"),
        ("GET", "/jobs/batch", "POST"),
        ("POST", "/health", "GET"),
        ("HEAD", "/metrics", "GET"),
    ],
)
def test_a_wrong_method_is_a_json_405_with_allow(client, method, path, allowed):
    result = client.simulate_request(method, path)

    assert result.status_code == 405
    assert result.headers["allow"].startswith(allowed)
    if method != "HEAD":
        assert error_code(result, 405) == "method_not_allowed"


def test_a_400_raised_by_the_framework_gets_our_body(service):
    """A Content-Length that is not a number makes Falcon raise its own 400. Falcon's test
    client refuses to send one, so the app is called as a WSGI server would."""
    app = create_app(service)
    environ = create_environ(
        "/jobs",
        method="POST",
        host="localhost",
        headers={**JSON_HEADERS, "Content-Length": "not-a-number"},
    )
    started: list[tuple[str, list[tuple[str, str]]]] = []

    body = b"".join(app(environ, lambda status, headers: started.append((status, headers))))

    ((status, headers),) = started
    assert status.startswith("400")
    assert ("content-type", "application/json") in [(k.lower(), v) for k, v in headers]
    parsed = json.loads(body)
    assert parsed["code"] == "invalid_request"
    assert "Content-Length" in parsed["error"]
    assert set(parsed) == {"error", "code"}


def test_an_unexpected_exception_is_a_500_with_a_logged_request_id(client, service, caplog):
    service.crash = sqlite3.OperationalError('near "SELECT": syntax error in /srv/app/store.py')

    with caplog.at_level(logging.ERROR, logger="workstream.http"):
        result = post_json(client, "/jobs", {"type": "echo"})

    assert error_code(result, 500) == "internal_error"
    assert result.json["error"] == "internal error"
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "http_error"]
    assert record.request_id == result.json["request_id"]
    assert record.exc_info is not None


def test_an_internal_workstream_error_is_not_shown_to_the_client(client, service):
    service.crash = errors.StaleAttempt("job 1 attempt 2 by owner-abc no longer holds the job")

    result = client.simulate_get("/jobs")

    assert error_code(result, 500) == "internal_error"
    assert "owner-abc" not in result.text


def test_a_503_carries_a_request_id_that_is_logged(client, service, caplog):
    service.draining = True

    with caplog.at_level(logging.WARNING, logger="workstream.http"):
        result = post_json(client, "/jobs", {"type": "echo"})

    assert error_code(result, 503) == "shutting_down"
    assert [r.request_id for r in caplog.records] == [result.json["request_id"]]


def test_every_response_carries_a_fresh_request_id(client, service):
    job = service.add_job()
    results = [
        client.simulate_get("/health"),
        client.simulate_get(f"/jobs/{job.id}"),
        client.simulate_get("/nowhere"),
        client.simulate_request("PATCH", "/jobs"),
        post_json(client, "/jobs", {"type": "echo"}),
        client.simulate_post("/jobs", body=b"{", headers=JSON_HEADERS),
    ]

    ids = [result.headers["x-request-id"] for result in results]

    assert all(len(request_id) == 32 for request_id in ids)
    assert len(set(ids)) == len(ids)


def test_no_error_response_leaks_internals(client, service):
    """A sweep over many failing requests, including ones whose exception text is full of
    internals: none of it reaches the client."""
    job = service.add_job(status=JobStatus.COMPLETED)
    requests = [
        ("GET", "/nowhere", None, {}),
        ("DELETE", "/jobs", None, {}),
        ("POST", "/jobs", b"{", JSON_HEADERS),
        ("POST", "/jobs", b'{"type": "echo"}', {"Content-Type": "text/xml"}),
        ("POST", "/jobs", b"[" * 5000 + b"]" * 5000, JSON_HEADERS),
        ("POST", "/jobs", b'{"type": "nope"}', JSON_HEADERS),
        ("POST", "/jobs", b'{"type": "echo", "delay": "x"}', JSON_HEADERS),
        ("GET", "/jobs", None, {}),
        ("GET", f"/jobs/{job.id}x", None, {}),
        ("POST", f"/jobs/{job.id}/cancel", None, {}),
    ]
    for method, path, body, headers in requests:
        assert_hygienic(client.simulate_request(method, path, body=body, headers=headers))

    service.crash = RuntimeError(
        'Traceback (most recent call last):\n  File "/x/falcon/app.py", line 1\n'
        "waitress sqlite3 SELECT * FROM jobs"
    )
    for method, path, body, headers in requests[-3:]:
        assert_hygienic(client.simulate_request(method, path, body=body, headers=headers))
