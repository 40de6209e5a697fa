"""DNS rebinding: without a token, only requests addressed to this machine are served, and
state-changing requests from another origin are refused."""

from __future__ import annotations

import pytest

from tests.unit.http.support import JSON_HEADERS, error_code
from workstream.http.hosts import HostCheckMiddleware

ALLOWED_HOSTS = [
    "localhost",
    "localhost:8080",
    "LOCALHOST:8080",
    "127.0.0.1",
    "127.0.0.1:8080",
    "[::1]",
    "[::1]:8080",
]
FOREIGN_HOSTS = [
    "rebind.attacker.example",
    "rebind.attacker.example:8080",
    "localhost.attacker.example",
    "127.0.0.1.nip.io",
    "127.0.0.2",
    "localhost:8080:80",
    "[::1",
    "::1",
    "localhost:port",
    "",
]


def _submit(client, host=None, origin=None):
    headers = {**JSON_HEADERS}
    if host is not None:
        headers["Host"] = host
    if origin is not None:
        headers["Origin"] = origin
    return client.simulate_post("/jobs", body=b'{"type": "echo"}', headers=headers)


@pytest.mark.parametrize("host", ALLOWED_HOSTS)
def test_local_names_are_served_without_a_token(client, host):
    assert _submit(client, host).status_code == 201
    assert client.simulate_get("/jobs", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_a_foreign_host_is_refused_without_a_token_and_nothing_is_stored(client, service, host):
    result = _submit(client, host)

    assert error_code(result, 403) == "forbidden"
    assert service.submitted == []
    assert client.simulate_get("/jobs", headers={"Host": host}).status_code == 403


def test_the_configured_host_is_served(make_client):
    client = make_client(host="192.0.2.7")

    assert _submit(client, "192.0.2.7:8080").status_code == 201
    assert _submit(client, "192.0.2.8:8080").status_code == 403


def test_an_ipv6_configured_host_is_matched_in_brackets(make_client):
    client = make_client(host="fd00::7")

    assert _submit(client, "[fd00::7]:8080").status_code == 201
    assert _submit(client, "[FD00::7]").status_code == 201


def test_a_wildcard_bind_accepts_addresses_but_not_names():
    check = HostCheckMiddleware("0.0.0.0")

    assert check.host_allowed("192.0.2.7:8080")
    assert check.host_allowed("[2001:db8::1]:8080")
    assert check.host_allowed("localhost")
    assert not check.host_allowed("rebind.attacker.example")


def test_with_a_token_any_host_is_served(make_client):
    token = "a-token-of-some-length"
    client = make_client(api_token=token)
    headers = {**JSON_HEADERS, "Host": "api.example.com", "Authorization": f"Bearer {token}"}

    assert (
        client.simulate_post("/jobs", body=b'{"type": "echo"}', headers=headers).status_code == 201
    )


@pytest.mark.parametrize(
    "origin",
    ["http://rebind.attacker.example", "https://evil.example", "null", "http://localhost:9999"],
)
def test_a_state_change_from_another_origin_is_refused(client, service, origin):
    job = service.add_job()

    assert error_code(_submit(client, "localhost:8080", origin), 403) == "forbidden"
    cancel = client.simulate_post(
        f"/jobs/{job.id}/cancel", headers={"Host": "localhost:8080", "Origin": origin}
    )
    assert error_code(cancel, 403) == "forbidden"
    assert service.submitted == []
    assert service.job(job.id).status.value == "pending"


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("localhost:8080", "http://localhost:8080"),
        ("127.0.0.1:8080", "https://127.0.0.1:8080"),
        ("[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_a_state_change_from_this_servers_own_origin_is_served(client, host, origin):
    assert _submit(client, host, origin).status_code == 201


def test_reads_are_served_whatever_the_origin(client):
    headers = {"Host": "localhost", "Origin": "https://elsewhere.example"}

    assert client.simulate_get("/jobs", headers=headers).status_code == 200
    assert client.simulate_get("/health", headers=headers).status_code == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health_answers_whatever_the_host(client, method):
    # Probes name the server as they know it; /health changes and reveals nothing.
    result = client.simulate_request(method, "/health", headers={"Host": "10.1.2.3:8080"})

    assert result.status_code == 200
    assert client.simulate_post("/health", headers={"Host": "evil.example"}).status_code == 403
