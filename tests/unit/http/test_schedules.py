"""`GET /schedules` and `POST /schedules/{name}/run` through falcon.testing, with a fake
scheduler view; every answer is one the OpenAPI document describes."""

from __future__ import annotations

from falcon.testing import Result

from tests.unit.http.fakes import T0, FakeService
from tests.unit.http.openapi_check import check_response
from tests.unit.http.support import JSON_HEADERS, error_code, local_client
from workstream.errors import NotFound, ScheduledJobsFull
from workstream.http.app import create_app
from workstream.http.openapi import openapi_document
from workstream.jobs.schedules import ScheduleState
from workstream.units import format_time

DOCUMENT = openapi_document(FakeService().job_types(), now=T0)


class FakeSchedules:
    def __init__(self) -> None:
        self.runs: list[str] = []
        self.full = False

    def schedules(self) -> list[ScheduleState]:
        return [
            ScheduleState("nightly", "echo", "0 3 * * *", "Europe/Paris", T0 + 3600, T0, "j1"),
            ScheduleState("tick", "echo", "@every 1s", "UTC", T0 + 1, None, None),
        ]

    def run_schedule(self, name: str) -> str:
        if name not in ("nightly", "tick"):
            raise NotFound(f"no schedule named {name!r} (known: nightly, tick)")
        if self.full:
            raise ScheduledJobsFull("too many scheduled jobs", retry_after=3)
        self.runs.append(name)
        return f"job-{len(self.runs)}"


def client(schedules: FakeSchedules | None = None):
    return local_client(create_app(FakeService(), schedules=schedules or FakeSchedules()))


def test_get_lists_each_schedule_with_its_next_and_last_run() -> None:
    result = client().simulate_get("/schedules")
    assert result.status_code == 200
    nightly, tick = result.json["schedules"]
    assert nightly == {
        "name": "nightly",
        "type": "echo",
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "next_run_at": format_time(T0 + 3600),
        "last_run_at": format_time(T0),
        "last_job_id": "j1",
    }
    assert nightly["next_run_at"].endswith("Z")
    assert tick["last_run_at"] is None and tick["cron"] == "@every 1s"
    check_response(DOCUMENT, "GET", "/schedules", result)


def test_run_submits_one_job_now() -> None:
    fake = FakeSchedules()
    result: Result = client(fake).simulate_post("/schedules/nightly/run")
    assert result.status_code == 201
    assert result.json == {"schedule": "nightly", "job_id": "job-1"}
    assert result.headers["location"] == "/jobs/job-1"
    check_response(DOCUMENT, "POST", "/schedules/{name}/run", result)
    with_body = client(fake).simulate_post("/schedules/tick/run", body=b"{}", headers=JSON_HEADERS)
    assert with_body.status_code == 201 and fake.runs == ["nightly", "tick"]


def test_run_refusals_are_json_errors_that_name_the_problem() -> None:
    unknown = client().simulate_post("/schedules/weekly/run")
    assert error_code(unknown, 404) == "not_found"
    assert "weekly" in unknown.json["error"]
    check_response(DOCUMENT, "POST", "/schedules/{name}/run", unknown)
    fields = client().simulate_post(
        "/schedules/nightly/run", body=b'{"x": 1}', headers=JSON_HEADERS
    )
    assert error_code(fields, 400) == "invalid_request"
    fake = FakeSchedules()
    fake.full = True
    full = client(fake).simulate_post("/schedules/nightly/run")
    assert error_code(full, 429) == "too_many_scheduled_jobs"
    assert full.headers["retry-after"] == "3"
    check_response(DOCUMENT, "POST", "/schedules/{name}/run", full)


def test_an_app_without_a_scheduler_has_no_schedules() -> None:
    app = local_client(create_app(FakeService()))
    assert app.simulate_get("/schedules").json == {"schedules": []}
    assert error_code(app.simulate_post("/schedules/x/run"), 404) == "not_found"
