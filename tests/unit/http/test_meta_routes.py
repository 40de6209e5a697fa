"""GET /metrics, GET /health and GET /openapi.json."""

from __future__ import annotations

import pytest

from tests.unit.http.fakes import METRICS_CONTENT_TYPE
from tests.unit.http.support import error_code

STATS_KEYS = {
    "total_jobs_created",
    "jobs_completed",
    "jobs_failed",
    "jobs_retried",
    "jobs_in_progress",
    "queue_size",
}


@pytest.mark.parametrize("accept", [None, "*/*", "text/plain", "text/html", "text/*"])
def test_metrics_are_prometheus_text_unless_json_is_preferred(client, accept):
    headers = {} if accept is None else {"Accept": accept}

    result = client.simulate_get("/metrics", headers=headers)

    assert result.status_code == 200
    assert result.headers["content-type"] == METRICS_CONTENT_TYPE
    assert result.text.startswith("# HELP workstream_jobs_created_total")
    assert result.headers["vary"] == "Accept"


@pytest.mark.parametrize(
    "accept", ["application/json", "application/json, text/plain;q=0.5", "application/*"]
)
def test_metrics_are_json_when_the_client_prefers_it(client, service, accept):
    service.add_job()

    result = client.simulate_get("/metrics", headers={"Accept": accept})

    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    assert set(result.json) >= STATS_KEYS
    assert result.json["queue_size"] == 1


def test_metrics_when_the_engine_is_stuck_are_503(client, service):
    service.stuck = True

    assert error_code(client.simulate_get("/metrics"), 503) == "service_busy"


def test_health_is_200_ok_with_details(client):
    result = client.simulate_get("/health")

    assert result.status_code == 200
    assert result.json == {"status": "ok", "workers": 2}


def test_health_while_draining_is_503_shutting_down(client, service):
    service.draining = True

    result = client.simulate_get("/health")

    assert result.status_code == 503
    assert result.json["status"] == "shutting_down"


def test_health_with_storage_down_is_503_with_its_status(client, service):
    service.storage_down = True

    result = client.simulate_get("/health")

    assert result.status_code == 503
    assert result.json == {"status": "unavailable", "storage": "unreachable"}


def test_health_details_cannot_override_the_status(client, service):
    service.health_details = {"status": "fine", "workers": 1}

    assert client.simulate_get("/health").json == {"status": "ok", "workers": 1}


def test_openapi_is_served_as_json(client):
    result = client.simulate_get("/openapi.json")

    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    assert result.json["openapi"] == "3.0.3"


def test_options_is_not_served_it_is_a_405_listing_the_allowed_methods(client):
    result = client.simulate_options("/jobs")

    assert result.status_code == 405
    assert result.json["code"] == "method_not_allowed"
    assert result.headers["Allow"] == "GET, POST"
    assert result.headers["X-Request-Id"]


def test_options_on_an_unknown_path_is_a_404(client):
    assert client.simulate_options("/nowhere").status_code == 404
