"""The client's and the CLI's schedules: `Client.schedules`, `Client.run_schedule`,
`workstream schedules [--json]` and `workstream schedules run NAME`, against the stub."""

from __future__ import annotations

import json

import pytest

from tests.unit.client.conftest import Stub
from workstream import cli
from workstream.client import Client
from workstream.client.errors import NotFoundError

NIGHTLY = {
    "name": "nightly",
    "type": "report",
    "cron": "0 3 * * *",
    "timezone": "Europe/Paris",
    "next_run_at": "2027-01-16T02:00:00Z",
    "last_run_at": "2027-01-15T02:00:00.120000Z",
    "last_job_id": "job-1",
}
NEVER = {**NIGHTLY, "name": "tick", "cron": "@every 1s", "last_run_at": None, "last_job_id": None}


def test_schedules_lists_what_the_server_answers(stub: Stub, client: Client) -> None:
    stub.script("GET", "/schedules", 200, {"schedules": [NIGHTLY]})
    assert client.schedules() == [NIGHTLY]


def test_run_schedule_posts_an_empty_body_to_the_quoted_name(stub: Stub, client: Client) -> None:
    stub.script("POST", "/schedules/a%2Fb/run", 201, {"schedule": "a/b", "job_id": "j"})
    assert client.run_schedule("a/b") == {"schedule": "a/b", "job_id": "j"}
    [sent] = stub.sent("POST")
    assert sent.target == "/schedules/a%2Fb/run" and sent.json() == {}
    stub.script("POST", "/schedules/gone/run", 404, {"error": "no schedule", "code": "not_found"})
    with pytest.raises(NotFoundError):
        client.run_schedule("gone")
    with pytest.raises(ValueError, match="schedule name"):
        client.run_schedule(" ")


def test_the_cli_prints_a_table_or_json(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.script("GET", "/schedules", 200, {"schedules": [NIGHTLY, NEVER]})
    assert cli.main(["schedules", "--url", stub.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "TYPE",
        "CRON",
        "TIMEZONE",
        "NEXT",
        "RUN",
        "LAST",
        "RUN",
        "LAST",
        "JOB",
    ]
    assert "nightly" in lines[1] and "0 3 * * *" in lines[1] and "2027-01-15 02:00:00" in lines[1]
    assert lines[2].split()[-2:] == ["-", "-"]  # never ran
    stub.script("GET", "/schedules", 200, {"schedules": [NIGHTLY]})
    assert cli.main(["schedules", "--json", "--url", stub.url]) == 0
    assert json.loads(capsys.readouterr().out) == [NIGHTLY]
    stub.script("GET", "/schedules", 200, {"schedules": []})
    assert cli.main(["schedules", "--url", stub.url]) == 0
    assert capsys.readouterr().out.strip() == "no schedules"


def test_the_cli_runs_a_schedule_now(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.script("POST", "/schedules/nightly/run", 201, {"schedule": "nightly", "job_id": "j9"})
    assert cli.main(["schedules", "run", "nightly", "--url", stub.url]) == 0
    assert json.loads(capsys.readouterr().out) == {"schedule": "nightly", "job_id": "j9"}
    assert cli.main(["schedules", "run", "--url", stub.url]) == 2
    assert "give the schedule's NAME" in capsys.readouterr().err
    stub.script(
        "POST", "/schedules/x/run", 404, {"error": "no schedule named 'x'", "code": "not_found"}
    )
    assert cli.main(["schedules", "run", "x", "--url", stub.url]) == 1
    assert "no schedule named 'x' (not_found, HTTP 404)" in capsys.readouterr().err
