"""GET /types, POST /types/{name}/pause and /resume, and the priority field (issue 13)."""

from __future__ import annotations

import pytest

from tests.unit.http.support import JSON_HEADERS, error_code
from workstream.http.openapi import openapi_document


def test_types_lists_every_type_with_state_limits_and_counts(client, service):
    service.add_job(type="sleep")
    result = client.simulate_get("/types")
    assert result.status_code == 200
    types = {item["name"]: item for item in result.json["types"]}
    assert sorted(types) == ["echo", "sleep", "strict"]
    assert types["sleep"] == {
        "name": "sleep",
        "paused": False,
        "max_concurrency": 2,
        "concurrency_key": "tenant",
        "rate_limit": "10/s",
        "running": 0,
        "counts": {"pending": 1},
        "blocked_until": None,
    }
    assert types["echo"]["max_concurrency"] is None and types["echo"]["counts"] == {}


def test_pause_then_resume_a_type(client, service):
    paused = client.simulate_post("/types/echo/pause")
    assert paused.status_code == 200
    assert paused.json["name"] == "echo" and paused.json["paused"] is True
    assert service.paused == {"echo"}
    listed = {item["name"]: item for item in client.simulate_get("/types").json["types"]}
    assert listed["echo"]["paused"] is True
    resumed = client.simulate_post("/types/echo/resume", json={})
    assert resumed.status_code == 200 and resumed.json["paused"] is False
    assert service.paused == set()


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_an_unknown_type_is_404_with_the_json_error(client, action):
    result = client.simulate_post(f"/types/nope/{action}")
    assert result.status_code == 404
    assert error_code(result, 404) == "not_found"
    assert "nope" in result.json["error"]


def test_pause_takes_no_input(client):
    result = client.simulate_post("/types/echo/pause", json={"for": "1h"})
    assert result.status_code == 400


def test_a_paused_type_is_still_admitted(client, service):
    client.simulate_post("/types/echo/pause")
    result = client.simulate_post("/jobs", json={"type": "echo"}, headers=JSON_HEADERS)
    assert result.status_code == 201


def test_priority_is_stored_and_shown(client):
    result = client.simulate_post(
        "/jobs", json={"type": "echo", "priority": 0}, headers=JSON_HEADERS
    )
    assert result.status_code == 201 and result.json["priority"] == 0
    default = client.simulate_post("/jobs", json={"type": "echo"}, headers=JSON_HEADERS)
    assert default.json["priority"] == 5


@pytest.mark.parametrize("priority", [-1, 10, "high", 2.5, True])
def test_a_bad_priority_is_400_naming_the_field(client, priority):
    result = client.simulate_post(
        "/jobs", json={"type": "echo", "priority": priority}, headers=JSON_HEADERS
    )
    assert result.status_code == 400
    assert error_code(result, 400) == "invalid_request"
    assert "'priority'" in result.json["error"]


def test_a_bad_priority_in_a_batch_names_its_index(client):
    result = client.simulate_post(
        "/jobs/batch",
        json={"jobs": [{"type": "echo"}, {"type": "echo", "priority": 99}]},
        headers=JSON_HEADERS,
    )
    assert result.status_code == 400
    assert result.json["error"].startswith("jobs[1]: 'priority'")


def test_openapi_describes_types_and_priority():
    document = openapi_document(["echo"], now=1_800_000_000.0)
    assert {"/types", "/types/{name}/pause", "/types/{name}/resume"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    assert schemas["JobSubmission"]["properties"]["priority"]["maximum"] == 9
    assert "priority" in schemas["Job"]["required"]
    assert "paused" in schemas["JobType"]["required"]
