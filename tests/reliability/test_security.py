"""Scenarios 17-18: the API token and the bind address, on the real server.

Also in tests/e2e/test_http_server.py: a public bind without a token refused (exit 2), and
the token guarding every route but /health.
"""

from __future__ import annotations

import json
import signal

import psutil

from tests.reliability.checker import Figures
from tests.reliability.harness import Harness, report

TOKEN = "tok-Rel1ab1l1ty-7c41e9"
BAD_AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    f"Basic {TOKEN}",
    f"Token {TOKEN}",
    f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN.upper()}",
    f"Bearer  {TOKEN} extra",
    "Bearer " + "a" * 4000,
    f"{TOKEN}",
]


def test_every_bad_token_gets_the_same_401_and_the_token_is_never_logged(
    harness: Harness,
) -> None:
    server = harness.start(API_TOKEN=TOKEN, LOG_LEVEL="debug")
    bodies = set()
    statuses = []
    for path, method in [("/jobs", "GET"), ("/jobs", "POST"), ("/metrics", "GET"), ("/x", "GET")]:
        for authorization in BAD_AUTHORIZATIONS:
            headers = {} if authorization is None else {"Authorization": authorization}
            body = {"type": "echo"} if method == "POST" else None
            status, response_headers, parsed = harness.request(method, path, body, headers=headers)
            statuses.append(status)
            bodies.add(json.dumps(parsed, sort_keys=True))
            assert response_headers.get("WWW-Authenticate") == "Bearer"
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert harness.request("POST", "/jobs", {"type": "echo"}, headers=good)[0] == 201
    assert harness.request("GET", "/health")[0] == 200  # no token needed
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    leaked = [line for line in server.lines if TOKEN in line or TOKEN[:-1] in line]
    fig = Figures("api_token", submitted=len(statuses))
    fig.illegal = len(leaked) + (len(bodies) - 1) + sum(1 for s in statuses if s != 401)
    fig.extra.update(
        requests=len(statuses), distinct_401_bodies=len(bodies), token_in_logs=len(leaked)
    )
    report(fig)
    assert set(statuses) == {401}
    assert len(bodies) == 1, bodies
    assert not leaked
    assert server.lines  # debug logging was on


def test_the_server_binds_to_loopback_by_default(harness: Harness) -> None:
    server = harness.start()
    assert server.proc is not None
    listening = [
        c.laddr.ip
        for c in psutil.Process(server.proc.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    fig = Figures("binding")
    fig.extra.update(listening="+".join(sorted(set(listening))))
    report(fig)
    assert listening and set(listening) <= {"127.0.0.1", "::1"}
