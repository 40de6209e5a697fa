"""GET /jobs/{id}, POST /jobs/{id}/cancel and POST /jobs/{id}/retry."""

from __future__ import annotations

import pytest

from tests.unit.http.support import JSON_HEADERS, error_code
from workstream.jobs.model import JobStatus

JOB_FIELDS = {
    "id",
    "type",
    "payload",
    "status",
    "attempts",
    "max_retries",
    "priority",
    "last_error",
    "result",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "run_at",
}


def test_get_answers_the_whole_job(client, service):
    job = service.add_job(status=JobStatus.COMPLETED, result={"ok": True}, attempts=1)

    result = client.simulate_get(f"/jobs/{job.id}")

    assert result.status_code == 200
    assert set(result.json) == JOB_FIELDS
    assert result.json == job.to_public()


def test_get_an_unknown_job_is_404(client):
    assert error_code(client.simulate_get("/jobs/no-such-job"), 404) == "not_found"


def test_cancel_a_pending_job(client, service):
    job = service.add_job()

    result = client.simulate_post(f"/jobs/{job.id}/cancel")

    assert result.status_code == 200
    assert result.json["status"] == "cancelled"
    assert result.json["run_at"] is None
    assert service.job(job.id).status is JobStatus.CANCELLED


def test_retry_a_failed_job(client, service):
    job = service.add_job(status=JobStatus.FAILED, attempts=4, last_error="boom")

    result = client.simulate_post(f"/jobs/{job.id}/retry")

    assert result.status_code == 200
    assert result.json["status"] == "pending"
    assert result.json["attempts"] == 4


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("cancel", JobStatus.COMPLETED),
        ("cancel", JobStatus.PROCESSING),
        ("cancel", JobStatus.CANCELLED),
        ("retry", JobStatus.COMPLETED),
        ("retry", JobStatus.PENDING),
    ],
)
def test_an_illegal_change_is_409_and_not_applied(client, service, action, status):
    job = service.add_job(status=status)

    result = client.simulate_post(f"/jobs/{job.id}/{action}")

    assert error_code(result, 409) == "invalid_state"
    assert service.job(job.id) == job


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_changing_an_unknown_job_is_404(client, action):
    assert error_code(client.simulate_post(f"/jobs/nope/{action}"), 404) == "not_found"


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "text/plain"}], ids=["none", "text"])
def test_no_body_is_accepted_whatever_the_content_type(client, service, headers):
    job = service.add_job()

    result = client.simulate_post(f"/jobs/{job.id}/cancel", headers=headers)

    assert result.status_code == 200


def test_an_empty_json_object_is_accepted(client, service):
    job = service.add_job()

    result = client.simulate_post(f"/jobs/{job.id}/cancel", body=b"{}", headers=JSON_HEADERS)

    assert result.status_code == 200


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"force": true}', JSON_HEADERS, 400, "invalid_request"),
        (b"[]", JSON_HEADERS, 400, "invalid_request"),
        (b"{", JSON_HEADERS, 400, "invalid_json"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b"{}", {}, 415, "unsupported_media_type"),
    ],
)
def test_a_body_other_than_an_empty_object_is_refused(client, service, body, headers, status, code):
    job = service.add_job()

    result = client.simulate_post(f"/jobs/{job.id}/retry", body=body, headers=headers)

    assert error_code(result, status) == code
    assert service.job(job.id) == job


def test_an_oversized_body_on_an_action_is_413(make_client, service):
    job = service.add_job()
    limited = make_client(max_body_bytes=10)

    result = limited.simulate_post(
        f"/jobs/{job.id}/cancel", body=b'{"a": "' + b"x" * 20 + b'"}', headers=JSON_HEADERS
    )

    assert error_code(result, 413) == "payload_too_large"
