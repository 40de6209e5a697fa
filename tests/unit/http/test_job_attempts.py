"""GET /jobs/{id}/attempts: a job's attempt history with errors and tracebacks."""

from __future__ import annotations

from tests.unit.http.openapi_check import check_response
from tests.unit.http.support import error_code
from workstream.http.resources import MAX_ATTEMPTS_SHOWN
from workstream.jobs import attempts
from workstream.jobs.attempts import Attempt
from workstream.jobs.model import JobStatus

T = 1_800_000_000.0
TRACEBACK = 'Traceback (most recent call last):\n  File "h.py", line 3\nRuntimeError: boom\n'


def record(job_id: str, number: int, **fields) -> Attempt:
    values = {
        "outcome": attempts.FAILED,
        "finished_at": T + number,
        "started_at": T + number - 0.25,
        "node": "node-a",
        "worker": "process-1.0",
        "pid": 4242,
        "error": "RuntimeError: boom",
        "error_class": "RuntimeError",
        "traceback": TRACEBACK,
        "duration": 0.25,
        **fields,
    }
    return Attempt(job_id=job_id, number=number, **values)


def test_the_attempts_of_a_job_oldest_first(client, service):
    job = service.add_job(status=JobStatus.COMPLETED, attempts=2)
    service.attempt_records[job.id] = [
        record(job.id, 1),
        record(job.id, 2, outcome=attempts.COMPLETED, error=None, error_class=None, traceback=None),
    ]

    result = client.simulate_get(f"/jobs/{job.id}/attempts")

    assert result.status_code == 200
    first, second = result.json
    assert first == {
        "number": 1,
        "outcome": "failed",
        "started_at": "2027-01-15T08:00:00.750000Z",
        "finished_at": "2027-01-15T08:00:01.000000Z",
        "duration_ms": 250.0,
        "node": "node-a",
        "worker": "process-1.0",
        "pid": 4242,
        "error": "RuntimeError: boom",
        "error_class": "RuntimeError",
        "traceback": TRACEBACK,
    }
    assert second["outcome"] == "completed" and second["traceback"] is None
    document = client.simulate_get("/openapi.json").json
    check_response(document, "GET", "/jobs/{job_id}/attempts", result)


def test_a_job_that_never_ran_has_no_attempts(client, service):
    job = service.add_job()

    result = client.simulate_get(f"/jobs/{job.id}/attempts")

    assert result.status_code == 200 and result.json == []


def test_the_attempts_of_an_unknown_job_are_404(client):
    assert error_code(client.simulate_get("/jobs/no-such-job/attempts"), 404) == "not_found"


def test_only_the_latest_attempts_are_served(client, service):
    job = service.add_job()
    service.attempt_records[job.id] = [
        record(job.id, number) for number in range(1, MAX_ATTEMPTS_SHOWN + 11)
    ]

    shown = client.simulate_get(f"/jobs/{job.id}/attempts").json

    assert len(shown) == MAX_ATTEMPTS_SHOWN
    assert shown[0]["number"] == 11 and shown[-1]["number"] == MAX_ATTEMPTS_SHOWN + 10


def test_attempts_need_the_token(make_client, service):
    job = service.add_job()
    client = make_client(api_token="secret")

    assert error_code(client.simulate_get(f"/jobs/{job.id}/attempts"), 401) == "unauthorized"
