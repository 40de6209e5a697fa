"""The API token (RELIABILITY.md item 17): uniform 401s, /health open, nothing logged."""

from __future__ import annotations

import logging

import pytest

from tests.unit.http.support import JSON_HEADERS, error_code

TOKEN = "s3cr3t-t0ken"
ROUTES = [
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("POST", "/jobs/batch"),
    ("GET", "/jobs/some-id"),
    ("POST", "/jobs/some-id/cancel"),
    ("POST", "/jobs/some-id/retry"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/nowhere"),
    ("DELETE", "/jobs"),
    ("POST", "/health"),
]
BAD_AUTHORIZATIONS = {
    "missing": None,
    "empty": "",
    "scheme-only": "Bearer",
    "scheme-and-space": "Bearer ",
    "basic": f"Basic {TOKEN}",
    "no-scheme": TOKEN,
    "wrong": "Bearer wrong-token",
    "prefix": f"Bearer {TOKEN[:-1]}",
    "longer": f"Bearer {TOKEN}x",
    "two-tokens": f"Bearer {TOKEN} {TOKEN}",
    "non-ascii": "Bearer s3cr3t-t0kén",
}


@pytest.fixture
def secured(make_client):
    return make_client(api_token=TOKEN)


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATIONS.values(), ids=BAD_AUTHORIZATIONS)
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_but_health_needs_the_token(secured, service, method, path, authorization):
    headers = {**JSON_HEADERS}
    if authorization is not None:
        headers["Authorization"] = authorization

    result = secured.simulate_request(method, path, body=b'{"type": "echo"}', headers=headers)

    assert error_code(result, 401) == "unauthorized"
    assert result.json == {"error": "missing or invalid API token", "code": "unauthorized"}
    assert result.headers["www-authenticate"] == "Bearer"
    assert service.submitted == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_right_token_is_let_through(secured, scheme):
    headers = {**JSON_HEADERS, "Authorization": f"{scheme} {TOKEN}"}

    assert (
        secured.simulate_post("/jobs", body=b'{"type": "echo"}', headers=headers).status_code == 201
    )
    assert secured.simulate_get("/jobs", headers=headers).status_code == 200


def test_a_non_ascii_token_is_compared_as_utf8_bytes(make_client):
    secured = make_client(api_token="clé")
    sent_as_wsgi_text = "Bearer clé".encode().decode("latin-1")

    result = secured.simulate_get("/jobs", headers={"Authorization": sent_as_wsgi_text})

    assert result.status_code == 200


def test_health_is_open_without_a_token(secured):
    assert secured.simulate_get("/health").status_code == 200


def test_without_a_configured_token_no_authorization_is_needed(client):
    assert client.simulate_get("/jobs").status_code == 200


def test_the_token_never_reaches_the_logs(secured, service, caplog):
    service.crash = RuntimeError("boom")
    headers = {"Authorization": f"Bearer {TOKEN}"}

    with caplog.at_level(logging.DEBUG):
        secured.simulate_get("/jobs", headers=headers)
        secured.simulate_get("/jobs", headers={"Authorization": "Bearer guessed-token"})

    logged = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    assert TOKEN not in logged
    assert "guessed-token" not in logged


@pytest.mark.parametrize("draining", [False, True])
def test_head_health_answers_like_get_health_with_or_without_a_token(
    make_client, service, draining
):
    service.draining = draining
    expected = 503 if draining else 200

    for client in (make_client(), make_client(api_token=TOKEN)):
        head = client.simulate_head("/health")
        get = client.simulate_get("/health")
        assert head.status_code == get.status_code == expected
        assert head.content == b""
        assert head.headers["content-type"] == "application/json"


def test_head_elsewhere_still_needs_the_token(secured):
    assert secured.simulate_head("/metrics").status_code == 401


def test_each_failed_authentication_is_logged_and_counted(make_client, service, caplog):
    failures: list[None] = []
    secured = make_client(api_token=TOKEN, on_auth_failure=lambda: failures.append(None))

    with caplog.at_level(logging.WARNING, logger="workstream.http"):
        secured.simulate_get("/jobs")
        secured.simulate_get("/metrics", headers={"Authorization": "Basic abc"})
        secured.simulate_post("/jobs/x/cancel", headers={"Authorization": "Bearer guessed"})
        secured.simulate_get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        secured.simulate_get("/health")

    refused = [record for record in caplog.records if record.__dict__.get("event") == "auth_failed"]
    assert len(failures) == 3
    assert [(r.method, r.path, r.reason) for r in refused] == [  # type: ignore[attr-defined]
        ("GET", "/jobs", "no Authorization header"),
        ("GET", "/metrics", "not a Bearer token"),
        ("POST", "/jobs/x/cancel", "wrong token"),
    ]
    assert all(record.request_id for record in refused)  # type: ignore[attr-defined]
    assert "guessed" not in caplog.text + str([r.__dict__ for r in refused])


def test_a_long_path_is_logged_clipped(make_client, caplog):
    secured = make_client(api_token=TOKEN)

    with caplog.at_level(logging.WARNING, logger="workstream.http"):
        secured.simulate_get("/" + "p" * 10_000)

    (record,) = [r for r in caplog.records if r.__dict__.get("event") == "auth_failed"]
    assert len(record.path) < 300  # type: ignore[attr-defined]


def test_a_failing_failure_hook_still_answers_401(make_client):
    def broken() -> None:
        raise RuntimeError("counter broke")

    secured = make_client(api_token=TOKEN, on_auth_failure=broken)

    assert error_code(secured.simulate_get("/jobs"), 401) == "unauthorized"
