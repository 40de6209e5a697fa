"""POST /jobs and POST /jobs/batch: success, idempotency, and the service's refusals."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.unit.http.support import JSON_HEADERS, error_code, post_json


def test_submit_answers_201_with_the_job_and_its_location(client, service):
    result = post_json(client, "/jobs", {"type": "echo", "payload": {"n": 1}})

    assert result.status_code == 201
    job = result.json
    assert result.headers["location"] == f"/jobs/{job['id']}"
    assert job["type"] == "echo"
    assert job["payload"] == {"n": 1}
    assert job["status"] == "pending"
    assert job["attempts"] == 0
    assert service.job_count == 1


def test_submit_passes_the_options_to_the_service(client, service):
    post_json(client, "/jobs", {"type": "echo", "max_retries": 5, "delay": "2s"})

    (call,) = service.submitted
    (spec,) = call["specs"]
    assert spec.max_retries == 5
    assert spec.run_at is not None
    assert call["idempotency_key"] is None
    assert call["request_hash"] is None


def test_submit_accepts_a_charset_utf8_content_type_in_any_case(client):
    result = client.simulate_post(
        "/jobs",
        body=b'{"type": "echo"}',
        headers={"Content-Type": "Application/JSON; Charset=UTF-8"},
    )

    assert result.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"type": ""},
        {"type": "   "},
        {"type": 7},
        {"type": "bad type!"},
        {"type": "x" * 201},
        {"type": "echo", "unknown": 1},
        {"type": "echo", "max_retries": -1},
        {"type": "echo", "max_retries": 101},
        {"type": "echo", "max_retries": "3"},
        {"type": "echo", "max_retries": True},
        {"type": "echo", "delay": -1},
        {"type": "echo", "delay": "soon"},
        {"type": "echo", "delay": True},
        {"type": "echo", "delay": 10**400},
        {"type": "echo", "run_at": "tomorrow"},
        {"type": "echo", "run_at": "2030-01-01T00:00:00"},
        {"type": "echo", "delay": 1, "run_at": "2030-01-01T00:00:00Z"},
    ],
    ids=repr,
)
def test_bad_fields_are_refused_at_submission(client, service, body):
    assert error_code(post_json(client, "/jobs", body), 400) == "invalid_request"
    assert service.job_count == 0


def test_unknown_job_type_is_422_listing_the_known_types(client, service):
    result = post_json(client, "/jobs", {"type": "resize_image"})

    assert error_code(result, 422) == "unknown_job_type"
    assert "echo" in result.json["error"] and "sleep" in result.json["error"]
    assert service.job_count == 0


def test_a_payload_the_handler_refuses_is_400_invalid_payload(client, service):
    result = post_json(client, "/jobs", {"type": "strict", "payload": [1, 2]})

    assert error_code(result, 400) == "invalid_payload"
    assert service.job_count == 0


def test_a_full_queue_is_429_with_retry_after(client, service):
    service.capacity = 1
    post_json(client, "/jobs", {"type": "echo"})

    result = post_json(client, "/jobs", {"type": "echo"})

    assert error_code(result, 429) == "queue_full"
    assert result.headers["retry-after"] == "7"
    assert service.job_count == 1


@pytest.mark.parametrize(("retry_after", "header"), [(0, "1"), (1, "1"), (2.2, "3"), (60, "60")])
def test_retry_after_is_whole_seconds_and_at_least_one(client, service, retry_after, header):
    service.capacity, service.retry_after = 0, retry_after

    result = post_json(client, "/jobs", {"type": "echo"})

    assert result.headers["retry-after"] == header


def test_shutting_down_is_503(client, service):
    service.draining = True

    result = post_json(client, "/jobs", {"type": "echo"})

    assert error_code(result, 503) == "shutting_down"


@pytest.mark.parametrize(
    ("flag", "code"), [("storage_down", "storage_unavailable"), ("stuck", "service_busy")]
)
def test_storage_and_engine_trouble_is_503_with_retry_after(client, service, flag, code):
    setattr(service, flag, True)

    result = post_json(client, "/jobs", {"type": "echo"})

    assert error_code(result, 503) == code
    assert result.headers["retry-after"] == "1"


# -- Idempotency-Key -------------------------------------------------------------------------


def test_a_repeat_with_the_same_key_returns_the_first_job_with_200(client, service):
    first = post_json(client, "/jobs", {"type": "echo"}, {"Idempotency-Key": "order-42"})
    again = post_json(client, "/jobs", {"type": "echo"}, {"Idempotency-Key": "order-42"})

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json == first.json
    assert again.headers["location"] == first.headers["location"]
    assert service.job_count == 1


def test_the_request_hash_is_sha256_of_canonical_json(client, service):
    body = {"type": "echo", "payload": {"b": 1, "a": "é"}}
    raw = b'{ "payload": {"a": "\xc3\xa9", "b": 1},\n "type": "echo" }'

    client.simulate_post("/jobs", body=raw, headers={**JSON_HEADERS, "Idempotency-Key": "k"})

    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert service.submitted[0]["idempotency_key"] == "k"
    assert service.submitted[0]["request_hash"] == expected


def test_the_same_key_with_another_body_is_409(client, service):
    post_json(client, "/jobs", {"type": "echo"}, {"Idempotency-Key": "k1"})

    result = post_json(client, "/jobs", {"type": "sleep"}, {"Idempotency-Key": "k1"})

    assert error_code(result, 409) == "idempotency_key_reused"
    assert service.job_count == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there", "é"])
def test_a_malformed_idempotency_key_is_400(client, service, key):
    headers = {**JSON_HEADERS, "Idempotency-Key": key}

    result = client.simulate_post("/jobs", body=b'{"type": "echo"}', headers=headers)

    assert error_code(result, 400) == "invalid_request"
    assert service.submitted == []


def test_the_longest_idempotency_key_is_accepted(client):
    result = post_json(client, "/jobs", {"type": "echo"}, {"Idempotency-Key": "~" * 255})

    assert result.status_code == 201


# -- POST /jobs/batch ------------------------------------------------------------------------


def test_a_batch_answers_201_with_the_jobs_in_order(client, service):
    jobs = [{"type": "echo", "payload": {"i": index}} for index in range(3)]

    result = post_json(client, "/jobs/batch", {"jobs": jobs})

    assert result.status_code == 201
    assert [job["payload"] for job in result.json] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert len(service.submitted) == 1
    assert service.job_count == 3


def test_a_batch_of_1000_jobs_is_accepted(client, service):
    result = post_json(client, "/jobs/batch", {"jobs": [{"type": "echo"}] * 1000})

    assert result.status_code == 201
    assert service.job_count == 1000


@pytest.mark.parametrize(
    "body",
    [
        {"jobs": []},
        {"jobs": [{"type": "echo"}] * 1001},
        {},
        {"jobs": {"type": "echo"}},
        {"jobs": [{"type": "echo"}], "extra": True},
        [{"type": "echo"}],
    ],
    ids=["empty", "1001", "missing", "not-a-list", "unknown-key", "top-level-array"],
)
def test_bad_batch_shapes_are_400(client, service, body):
    assert error_code(post_json(client, "/jobs/batch", body), 400) == "invalid_request"
    assert service.submitted == []


def test_a_bad_job_in_a_batch_is_named_by_index_and_nothing_is_stored(client, service):
    jobs = [{"type": "echo"}, {"type": "echo"}, {"type": "echo", "max_retries": -5}]

    result = post_json(client, "/jobs/batch", {"jobs": jobs})

    assert error_code(result, 400) == "invalid_request"
    assert result.json["error"].startswith("jobs[2]: ")
    assert service.job_count == 0


def test_a_refused_payload_in_a_batch_is_400_naming_the_index(client, service):
    result = post_json(
        client, "/jobs/batch", {"jobs": [{"type": "strict"}, {"type": "strict", "payload": "x"}]}
    )

    assert error_code(result, 400) == "invalid_payload"
    assert result.json["error"].startswith("jobs[1]: ")
    assert service.job_count == 0


def test_an_unknown_type_in_a_batch_is_422_naming_the_index(client, service):
    result = post_json(client, "/jobs/batch", {"jobs": [{"type": "echo"}, {"type": "nope"}]})

    assert error_code(result, 422) == "unknown_job_type"
    assert "jobs[1]" in result.json["error"]
    assert service.job_count == 0


def test_a_batch_over_capacity_is_429_and_stores_nothing(client, service):
    service.capacity = 2

    result = post_json(client, "/jobs/batch", {"jobs": [{"type": "echo"}] * 3})

    assert error_code(result, 429) == "queue_full"
    assert result.headers["retry-after"] == "7"
    assert service.job_count == 0


def test_an_idempotency_key_on_a_batch_is_refused(client, service):
    result = post_json(
        client, "/jobs/batch", {"jobs": [{"type": "echo"}]}, {"Idempotency-Key": "k"}
    )

    assert error_code(result, 400) == "invalid_request"
    assert "POST /jobs only" in result.json["error"]
    assert service.submitted == []


def test_run_at_is_taken_as_given_and_rendered_in_utc(client):
    result = post_json(client, "/jobs", {"type": "echo", "run_at": "2020-01-15T09:00:00+01:00"})

    assert result.status_code == 201
    assert result.json["run_at"] == "2020-01-15T08:00:00.000000Z"


def test_a_batch_error_names_the_first_bad_job_whatever_is_wrong_with_it(client) -> None:
    body = {
        "jobs": [{"type": "echo"}, {"type": "no_such_type"}, {"type": "echo", "max_retries": -1}]
    }
    result = client.simulate_post("/jobs/batch", json=body)
    assert result.status_code == 422
    assert result.json["error"].startswith("jobs[1]: ")
    body = {"jobs": [{"type": "echo", "max_retries": -1}, {"type": "no_such_type"}]}
    result = client.simulate_post("/jobs/batch", json=body)
    assert result.status_code == 400
    assert result.json["error"].startswith("jobs[0]: ")


@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
def test_a_run_at_in_year_zero_is_400_not_a_stored_job_that_cannot_be_shown(client, service, path):
    # 0001-01-01T00:00:00+05:00 is 31 Dec of year 0 in UTC: parsed, it could not be rendered.
    job = {"type": "echo", "run_at": "0001-01-01T00:00:00+05:00"}
    body = job if path == "/jobs" else {"jobs": [job]}

    result = client.simulate_post(path, json=body)

    assert error_code(result, 400) == "invalid_request"
    assert "0001-01-01T00:00:00Z or later" in result.json["error"]
    assert service.submitted == []


def test_the_earliest_run_at_is_accepted(client):
    result = client.simulate_post("/jobs", json={"type": "echo", "run_at": "0001-01-01T00:00:00Z"})

    assert result.status_code == 201
    assert result.json["run_at"] == "0001-01-01T00:00:00.000000Z"
