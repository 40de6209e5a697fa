"""The HTTP side of the real server: keep-alive at shutdown, tokens, logs, the CLI."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import StartServer
from tests.e2e.serverproc import ServerProcess, run_workstream


def test_sigterm_exits_promptly_with_a_keep_alive_connection_open(
    start_server: StartServer,
) -> None:
    server = start_server()
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    idle.request("GET", "/health")  # HTTP/1.1: the connection stays open afterwards
    response = idle.getresponse()
    assert response.status == 200
    response.read()
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(15) == 0
    assert time.monotonic() - started < 5
    idle.close()


def test_every_log_line_is_one_json_object(start_server: StartServer) -> None:
    server = start_server()
    server.request("POST", "/jobs", {"type": "echo", "payload": {"x": 1}})
    server.request("POST", "/jobs", {"type": "nope"})
    server.request("GET", "/nowhere")
    server.signal(signal.SIGTERM)
    assert server.wait(15) == 0
    assert server.lines, "the server logged nothing"
    for line in server.lines:
        record = json.loads(line)
        assert {"ts", "level", "logger", "event"} <= set(record)


def test_an_api_token_guards_every_route_but_health_and_is_never_logged(
    start_server: StartServer,
) -> None:
    token = "tok-e2e-5f1c9a-0b7d"
    server = start_server(env={"API_TOKEN": token})
    assert server.request("GET", "/health")[0] == 200
    status, headers, body = server.request("GET", "/jobs")
    assert status == 401 and body["code"] == "unauthorized"
    assert headers.get("WWW-Authenticate") == "Bearer"
    assert server.request("GET", "/jobs", headers={"Authorization": "Bearer wrong"})[0] == 401
    auth = {"Authorization": f"Bearer {token}"}
    assert server.request("POST", "/jobs", {"type": "echo"}, headers=auth)[0] == 201
    assert server.request("GET", "/metrics", headers=auth)[0] == 200
    head = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    head.request("HEAD", "/health")  # as open as GET
    assert head.getresponse().status == 200
    head.close()
    server.signal(signal.SIGTERM)
    assert server.wait(15) == 0
    assert not any(token in line for line in server.lines)


def test_failed_authentications_are_logged_and_counted(start_server: StartServer) -> None:
    token = "tok-e2e-5f1c9a-counted"
    server = start_server(env={"API_TOKEN": token})
    auth = {"Authorization": f"Bearer {token}"}
    assert server.request("GET", "/jobs")[0] == 401
    assert (
        server.request("POST", "/jobs", {"type": "echo"}, {"Authorization": "Bearer no"})[0] == 401
    )

    _, _, text = server.request("GET", "/metrics", headers=auth)

    assert "workstream_auth_failures_total{" in text
    (sample,) = [
        line for line in text.splitlines() if line.startswith("workstream_auth_failures_total")
    ]
    assert sample.endswith(" 2.0")
    refused = server.wait_for_log("auth_failed", timeout=5, method="POST", path="/jobs")
    assert refused["reason"] == "wrong token"


def test_without_a_token_a_rebinding_host_or_a_foreign_origin_is_refused(
    start_server: StartServer,
) -> None:
    server = start_server()
    job = {"type": "echo"}
    status, _, body = server.request("POST", "/jobs", job, {"Host": "rebind.attacker.example"})
    assert (status, body["code"]) == (403, "forbidden")
    status, _, body = server.request("POST", "/jobs", job, {"Origin": "http://attacker.example"})
    assert (status, body["code"]) == (403, "forbidden")
    assert server.request("POST", "/jobs", job, {"Host": f"localhost:{server.port}"})[0] == 201
    _, _, jobs = server.request("GET", "/jobs")
    assert len(jobs) == 1


def test_a_public_bind_without_a_token_is_refused(workdir: Path) -> None:
    done = run_workstream(workdir, "serve", env={**ServerProcess(workdir).env, "HOST": "0.0.0.0"})
    assert done.returncode == 2
    assert "HOST = '0.0.0.0'" in done.stderr and "API_TOKEN" in done.stderr


def cli(workdir: Path, server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_workstream(workdir, *args, env={**server.env, "WORKSTREAM_URL": server.url})


def test_the_cli_submits_waits_lists_and_shows(start_server: StartServer, workdir: Path) -> None:
    server = start_server()
    done = cli(workdir, server, "submit", "echo", "--payload", '{"n": 7}', "--wait")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "completed" and job["result"] == {"n": 7}
    assert "completed" in done.stderr  # the progress line
    listed = cli(workdir, server, "jobs")
    assert listed.returncode == 0 and job["id"] in listed.stdout and "STATUS" in listed.stdout
    shown = cli(workdir, server, "jobs", job["id"])
    assert json.loads(shown.stdout)["id"] == job["id"]
    refused = cli(workdir, server, "submit", "no_such_type")
    assert refused.returncode == 1 and "unknown_job_type" in refused.stderr
    later = json.loads(cli(workdir, server, "submit", "echo", "--delay", "1h").stdout)
    assert json.loads(cli(workdir, server, "cancel", later["id"]).stdout)["status"] == "cancelled"
    failed = cli(workdir, server, "retry", later["id"])
    assert failed.returncode == 1 and "invalid_state" in failed.stderr


def test_the_cli_says_when_the_server_is_unreachable(workdir: Path) -> None:
    server = ServerProcess(workdir)
    server.port = 1  # nothing listens there
    done = cli(workdir, server, "jobs")
    assert done.returncode == 1
    assert "127.0.0.1:1" in done.stderr and "Traceback" not in done.stderr


def test_migrate_creates_the_schema_and_refuses_while_a_server_runs(
    start_server: StartServer, workdir: Path
) -> None:
    done = run_workstream(workdir, "migrate")
    assert done.returncode == 0 and "up to date" in done.stdout
    assert (workdir / "data" / "workstream.db").is_file()
    start_server()
    busy = run_workstream(workdir, "migrate")
    assert busy.returncode == 1 and "in use" in busy.stderr
