"""Helpers shared by the HTTP tests: sending JSON, and checking the error contract."""

from __future__ import annotations

import json
from typing import Any

from falcon.testing import Result, TestClient

JSON_HEADERS = {"Content-Type": "application/json"}
# Falcon's test client says `Host: falconframework.org`, which an app without a token
# refuses (DNS rebinding); the tests address the app as a local client would.
LOCAL_HOST = "localhost"


def local_client(app: Any) -> TestClient:
    return TestClient(app, headers={"Host": LOCAL_HOST})


# Nothing a client receives may name a traceback, a source file, SQL or a library.
FORBIDDEN_IN_RESPONSES = ("Traceback", 'File "', ".py", "falcon", "waitress", "sqlite", "SELECT")


def post_json(
    client: TestClient, path: str, body: Any, headers: dict[str, str] | None = None
) -> Result:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    return client.simulate_post(path, body=raw, headers={**JSON_HEADERS, **(headers or {})})


def assert_hygienic(result: Result) -> None:
    exposed = result.text + "\n".join(f"{name}: {value}" for name, value in result.headers.items())
    for word in FORBIDDEN_IN_RESPONSES:
        assert word.lower() not in exposed.lower(), f"{word!r} leaked: {exposed[:500]}"


def error_code(result: Result, status: int) -> str:
    """Check `result` is an error with `status` and exactly the error body; return its code."""
    assert result.status_code == status, (result.status_code, result.text[:500])
    assert result.headers["content-type"] == "application/json"
    body = result.json
    expected_keys = {"error", "code", "request_id"} if status >= 500 else {"error", "code"}
    assert set(body) == expected_keys, body
    assert isinstance(body["error"], str) and body["error"]
    if status >= 500:
        assert body["request_id"] == result.headers["x-request-id"]
    assert_hygienic(result)
    return body["code"]
