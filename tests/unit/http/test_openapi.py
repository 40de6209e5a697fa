"""The OpenAPI document stays true: it names exactly the app's routes, and every response
the app gives in these tests is one it documents (status, headers, body schema)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from falcon.inspect import inspect_routes
from falcon.testing import Result, TestClient

from tests.unit.http.fakes import T0, FakeService
from tests.unit.http.openapi_check import check_response, matches, resolve
from tests.unit.http.support import JSON_HEADERS, local_client
from workstream.http.app import create_app
from workstream.http.idempotency import request_hash
from workstream.http.openapi import openapi_document
from workstream.jobs.model import JobStatus
from workstream.jobs.spec import JobSpec

NOW = T0  # the fake service's clock: 2027-01-15
DOCUMENT = openapi_document(FakeService().job_types(), now=NOW)
TOKEN = "t0ken"


def test_the_operations_are_exactly_the_routes():
    app = create_app(FakeService())
    routes = {
        (method.method, route.path)
        for route in inspect_routes(app)
        for method in route.methods
        if not method.internal
    }
    operations = {
        (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item
    }

    assert routes == operations


def test_every_reference_resolves():
    pending: list[Any] = [DOCUMENT]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(DOCUMENT, node)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def test_every_operation_but_health_documents_401_and_health_needs_no_token():
    assert set(DOCUMENT["paths"]["/health"]) == {"get", "head"}
    for path, item in DOCUMENT["paths"].items():
        for operation in item.values():
            if path == "/health":
                assert operation["security"] == []
                assert "401" not in operation["responses"]
            else:
                assert "security" not in operation  # the global: bearer, or none configured
                assert "401" in operation["responses"]
    assert DOCUMENT["security"] == [{"bearerAuth": []}, {}]


def test_the_document_is_plain_json_and_served_as_built():
    client = local_client(create_app(FakeService(), clock=lambda: NOW))

    assert client.simulate_get("/openapi.json").json == json.loads(json.dumps(DOCUMENT))


def test_the_job_types_are_the_services_registered_ones():
    service = FakeService(known_types=("b_type", "a_type"))
    served = local_client(create_app(service)).simulate_get("/openapi.json").json

    job_type = served["components"]["schemas"]["JobSubmission"]["properties"]["type"]
    assert job_type["enum"] == ["a_type", "b_type"]


def test_post_jobs_links_to_the_operations_on_the_job():
    operations = {
        operation["operationId"]
        for item in DOCUMENT["paths"].values()
        for operation in item.values()
    }
    submit = DOCUMENT["paths"]["/jobs"]["post"]["responses"]
    batch = DOCUMENT["paths"]["/jobs/batch"]["post"]["responses"]

    for links, pointer in (
        (submit["201"]["links"], "/id"),
        (submit["200"]["links"], "/id"),
        (batch["201"]["links"], "/0/id"),
    ):
        assert {link["operationId"] for link in links.values()} == {
            "getJob",
            "cancelJob",
            "retryJob",
        }
        for link in links.values():
            assert link["operationId"] in operations
            assert link["parameters"] == {"job_id": f"$response.body#{pointer}"}


# -- the request schema agrees with the server -----------------------------------------------


def _days_ahead(days: float, offset: str = "Z", separator: str = "T") -> str:
    moment = datetime.fromtimestamp(time.time() + days * 86400, UTC)
    return moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S.%f") + offset


SUBMISSIONS = [
    {"type": "echo"},
    {"type": "echo", "payload": [1, "two", None]},
    {"type": "strict", "max_retries": 0, "payload": {}},
    {"type": "a.b:c-d_e", "max_retries": 0},  # well formed, but no handler: 422
    {"type": "0"},
    {"type": "echo", "max_retries": 100, "delay": 0},
    {"type": "echo", "max_retries": None, "delay": None, "payload": None},
    {"type": "echo", "delay": 2.5},
    {"type": "echo", "delay": "1m30s"},
    {"type": "echo", "delay": "500MS"},
    {"type": "echo", "delay": " 10 "},
    {"type": "echo", "run_at": "2020-01-01T00:00:00Z"},
    {"type": "echo", "run_at": "0001-01-01T00:00:00+05:00"},
    {"type": "echo", "run_at": _days_ahead(300, "-23:59")},
    {"type": "echo", "run_at": _days_ahead(300, "t", "z")},
    {"type": "echo", "run_at": _days_ahead(400)},
    {"type": "echo", "run_at": _days_ahead(700 * 365)},
    {"type": "echo", "delay": "7999h9999m99999s99999999ms"},
    {"type": "echo", "delay": "9000h"},
    {"type": "echo", "delay": "1s1s"},
    {"type": "echo", "delay": "1s1m"},
    {"type": "echo", "delay": "99999999"},
    {"type": "echo", "run_at": None},
    {},
    {"type": ""},
    {"type": " "},
    {"type": "no spaces"},
    {"type": "echo\n"},
    {"type": "x" * 201},
    {"type": "echo", "extra": 1},
    {"type": "echo", "max_retries": -1},
    {"type": "echo", "max_retries": 101},
    {"type": "echo", "max_retries": 1.5},
    {"type": "echo", "delay": -0.5},
    {"type": "echo", "delay": "soon"},
    {"type": "echo", "delay": "5 s"},
    {"type": "echo", "delay": ""},
    {"type": "echo", "delay": [1]},
    {"type": "echo", "delay": 1, "run_at": "2020-01-01T00:00:00Z"},
    {"type": "echo", "delay": None, "run_at": None},
    {"type": "echo", "run_at": 5},
]


@pytest.mark.parametrize("body", SUBMISSIONS, ids=lambda body: json.dumps(body)[:60])
def test_the_submission_schema_accepts_what_the_server_accepts(client, body):
    # The server dates submissions by the real clock: so must the document.
    document = openapi_document(FakeService().job_types(), now=time.time())
    schema = document["components"]["schemas"]["JobSubmission"]

    accepted_by_schema = matches(document, body, schema)
    status = client.simulate_post("/jobs", json=body).status_code
    accepted_by_server = status == 201

    assert accepted_by_schema == accepted_by_server, (body, status)


# -- every response seen is documented -------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    path: str
    options: dict[str, Any]
    prepare: Callable[[FakeService], Any] = lambda service: None


def _job_path(suffix: str = "") -> Callable[[FakeService], str]:
    return lambda service: f"/jobs/{service.add_job(status=JobStatus.FAILED).id}{suffix}"


def _submit_with_key(service: FakeService, hashed: str) -> None:
    service.submit([JobSpec(type="echo")], idempotency_key="k", request_hash=hashed)


GOOD = {"json": {"type": "echo", "payload": {"x": 1}}}
CALLS = {
    "submit": Call("POST", "/jobs", "/jobs", GOOD),
    "submit-repeat": Call(
        "POST",
        "/jobs",
        "/jobs",
        {**GOOD, "headers": {"Idempotency-Key": "k"}},
        lambda service: _submit_with_key(service, request_hash(GOOD["json"])),
    ),
    "submit-key-reused": Call(
        "POST",
        "/jobs",
        "/jobs",
        {**GOOD, "headers": {"Idempotency-Key": "k"}},
        lambda service: _submit_with_key(service, "another request"),
    ),
    "submit-bad-json": Call("POST", "/jobs", "/jobs", {"body": b"{", "headers": JSON_HEADERS}),
    "submit-not-json": Call("POST", "/jobs", "/jobs", {"body": b"{}"}),
    "submit-too-large": Call(
        "POST", "/jobs", "/jobs", {"body": b"{" + b" " * 2_000_000, "headers": JSON_HEADERS}
    ),
    "submit-unknown-type": Call("POST", "/jobs", "/jobs", {"json": {"type": "nope"}}),
    "submit-queue-full": Call(
        "POST", "/jobs", "/jobs", GOOD, lambda service: setattr(service, "capacity", 0)
    ),
    "submit-draining": Call(
        "POST", "/jobs", "/jobs", GOOD, lambda service: setattr(service, "draining", True)
    ),
    "submit-crash": Call(
        "POST", "/jobs", "/jobs", GOOD, lambda service: setattr(service, "crash", KeyError())
    ),
    "batch": Call("POST", "/jobs/batch", "/jobs/batch", {"json": {"jobs": [GOOD["json"]] * 2}}),
    "batch-empty": Call("POST", "/jobs/batch", "/jobs/batch", {"json": {"jobs": []}}),
    "batch-unknown-type": Call(
        "POST", "/jobs/batch", "/jobs/batch", {"json": {"jobs": [{"type": "x"}]}}
    ),
    "batch-not-json": Call("POST", "/jobs/batch", "/jobs/batch", {"body": b"{}"}),
    "batch-busy": Call(
        "POST",
        "/jobs/batch",
        "/jobs/batch",
        {"json": {"jobs": [GOOD["json"]]}},
        lambda service: setattr(service, "stuck", True),
    ),
    "list": Call("GET", "/jobs", "/jobs", {}, _job_path()),
    "list-paged": Call(
        "GET",
        "/jobs",
        "/jobs",
        {"query_string": "limit=1"},
        lambda service: [service.add_job() for _ in range(2)],
    ),
    "list-bad-limit": Call("GET", "/jobs", "/jobs", {"query_string": "limit=0"}),
    "list-bad-cursor": Call("GET", "/jobs", "/jobs", {"query_string": "cursor=zz"}),
    "list-storage-down": Call(
        "GET", "/jobs", "/jobs", {}, lambda service: setattr(service, "storage_down", True)
    ),
    "get": Call("GET", "/jobs/{job_id}", "", {}, _job_path()),
    "get-missing": Call("GET", "/jobs/{job_id}", "/jobs/9d7f0d0c-1111-4a4a-9a9a-000000000000", {}),
    "cancel": Call("POST", "/jobs/{job_id}/cancel", "", {}, _job_path("/cancel")),
    "cancel-empty-object": Call(
        "POST", "/jobs/{job_id}/cancel", "", {"json": {}}, _job_path("/cancel")
    ),
    "cancel-missing": Call("POST", "/jobs/{job_id}/cancel", "/jobs/nope/cancel", {}),
    "cancel-bad-body": Call(
        "POST", "/jobs/{job_id}/cancel", "", {"json": {"x": 1}}, _job_path("/cancel")
    ),
    "cancel-not-json": Call(
        "POST", "/jobs/{job_id}/cancel", "", {"body": b"{}"}, _job_path("/cancel")
    ),
    "retry": Call("POST", "/jobs/{job_id}/retry", "", {}, _job_path("/retry")),
    "retry-illegal": Call(
        "POST",
        "/jobs/{job_id}/retry",
        "",
        {},
        lambda service: f"/jobs/{service.add_job().id}/retry",
    ),
    "metrics-text": Call("GET", "/metrics", "/metrics", {}),
    "metrics-json": Call(
        "GET", "/metrics", "/metrics", {"headers": {"Accept": "application/json"}}
    ),
    "metrics-busy": Call(
        "GET", "/metrics", "/metrics", {}, lambda service: setattr(service, "stuck", True)
    ),
    "health": Call("GET", "/health", "/health", {}),
    "health-draining": Call(
        "GET", "/health", "/health", {}, lambda service: setattr(service, "draining", True)
    ),
    "health-crash": Call(
        "GET", "/health", "/health", {}, lambda service: setattr(service, "crash", OSError())
    ),
    "openapi": Call("GET", "/openapi.json", "/openapi.json", {}),
    "submit-foreign-host": Call(
        "POST", "/jobs", "/jobs", {**GOOD, "headers": {"Host": "x.example"}}
    ),
    "cancel-foreign-origin": Call(
        "POST", "/jobs/{job_id}/cancel", "", {"headers": {"Origin": "null"}}, _job_path("/cancel")
    ),
    "head-health": Call("HEAD", "/health", "/health", {}),
}


def _call(client: TestClient, service: FakeService, call: Call, headers: dict[str, str]) -> Result:
    prepared = call.prepare(service)
    path = call.path or prepared
    options = dict(call.options)
    options["headers"] = {**options.get("headers", {}), **headers}
    return client.simulate_request(call.method, path, **options)


@pytest.mark.parametrize("name", CALLS)
def test_each_response_is_documented(name):
    service = FakeService()
    call = CALLS[name]

    result = _call(local_client(create_app(service)), service, call, {})

    check_response(DOCUMENT, call.method, call.template, result)


@pytest.mark.parametrize("name", ["submit", "batch", "list", "get", "cancel", "metrics-json"])
def test_each_response_with_a_token_is_documented(name):
    service = FakeService()
    call = CALLS[name]
    client = local_client(create_app(service, api_token=TOKEN))

    allowed = _call(client, service, call, {"Authorization": f"Bearer {TOKEN}"})
    refused = _call(client, service, call, {})

    assert allowed.status_code < 300
    assert refused.status_code == 401
    check_response(DOCUMENT, call.method, call.template, allowed)
    check_response(DOCUMENT, call.method, call.template, refused)


def test_every_operation_lists_what_the_http_server_may_answer_before_routing():
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            assert {"400", "403", "413", "431"} <= set(operation["responses"]), (method, path)
            assert "501" not in operation["responses"]  # answered 400, see server.py
