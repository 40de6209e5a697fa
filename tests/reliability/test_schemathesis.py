"""API fuzzing in the default run: schemathesis (a third-party tool) generates requests from
the API description the live server serves at /openapi.json -- valid ones and,
deliberately, invalid ones -- sends them to the real server (a `workstream serve`
subprocess on a temporary SQLite database) and applies every check it has: no 5xx, status
codes, headers and bodies as documented, invalid input refused, and valid input accepted
(positive data acceptance). A second test follows the document's links (stateful testing:
submit, then get, cancel and retry the job submitted).

One gap is closed here rather than in the document: a handler may check its payload with
code (`sleep`, `email_send`, `webhook`), which no schema states. For those types the
test sends a payload the handler accepts in place of the generated one.

Bounded: MAX_EXAMPLES per operation (RELIABILITY_FUZZ_EXAMPLES to change it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.reliability.conftest import COLLECTOR
from tests.reliability.harness import PROBE_MODULE, Harness
from workstream.config import Settings
from workstream.http.openapi import openapi_document
from workstream.system import build_handlers

MAX_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "40"))
STATEFUL_EXAMPLES = 20

# Payloads their handlers accept; the webhook's destination is a closed local port that
# the server is allowed to reach (WEBHOOK_ALLOW_HOSTS), so nothing leaves the machine.
CHECKED_PAYLOADS: dict[str, Any] = {
    "sleep": {"seconds": 0},
    "email_send": {"to": "ann@example.com", "subject": "fuzz", "body": "hello"},
    "webhook": {"url": "http://127.0.0.1:9/hook", "body": {}},
}
SERVER_ENV = {
    "JOB_QUEUE_CAPACITY": "100000",
    "WORKER_COUNT": "2",
    "WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
}


# The handler table the server builds (built-ins and the probe module): the document is
# made for it here, and the server must serve the same one (checked by the fixture).
JOB_TYPES = build_handlers(Settings(job_handlers=(PROBE_MODULE,))).types()
schema = schemathesis.openapi.from_dict(openapi_document(JOB_TYPES))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    world = Harness(Path(tmp_path_factory.mktemp("fuzz")), collector=COLLECTOR)
    world.start(**SERVER_ENV)
    status, _, served = world.request("GET", "/openapi.json")
    assert status == 200
    assert set(CHECKED_PAYLOADS) <= set(JOB_TYPES)
    assert _without_run_at(served) == _without_run_at(openapi_document(JOB_TYPES))
    yield world
    world.stop_all()


def _without_run_at(document: dict[str, Any]) -> dict[str, Any]:
    """The document but the run_at pattern (it depends on the time the server started)."""
    copy = json.loads(json.dumps(document))
    copy["components"]["schemas"]["JobSubmission"]["properties"]["run_at"]["pattern"] = None
    return copy


def _checked_payloads(case: schemathesis.Case) -> None:
    """Give jobs of the types whose handler checks the payload a payload it accepts."""
    body = case.body
    jobs = body.get("jobs") if isinstance(body, dict) and case.path == "/jobs/batch" else [body]
    for job in jobs if isinstance(jobs, list) else []:
        job_type = job.get("type") if isinstance(job, dict) else None
        if isinstance(job_type, str) and job_type in CHECKED_PAYLOADS:
            job["payload"] = CHECKED_PAYLOADS[job_type]


def _not_run_during_the_test(case: schemathesis.Case) -> None:
    """Jobs the state machine submits wait an hour: whether a job has already run when a
    cancel or a retry follows (200 or 409) then does not depend on the workers' timing, so
    the same choices always lead to the same links (Hypothesis replays them and calls a
    different outcome flaky, which would say nothing about the server)."""
    body = case.body
    if case.method != "POST" or case.path not in ("/jobs", "/jobs/batch"):
        return
    jobs = body.get("jobs") if isinstance(body, dict) and case.path == "/jobs/batch" else [body]
    for job in jobs if isinstance(jobs, list) else []:
        if isinstance(job, dict) and "delay" not in job and "run_at" not in job:
            job["delay"] = "1h"


def _record(case: schemathesis.Case, response: Any) -> None:
    if response.status_code >= 400:
        COLLECTOR.add(
            f"fuzz {case.method} {case.path}",
            response.status_code,
            response.headers,
            response.content,
            # The fuzzer draws ids from the package's string constants (an exception's
            # name, say); a 404 that names the id it was asked for leaks nothing.
            echoed=tuple(str(value) for value in (case.path_parameters or {}).values()),
        )


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_honours_its_openapi_description(server: Harness, case: schemathesis.Case) -> None:
    assert server.server is not None
    _checked_payloads(case)
    response = case.call(base_url=server.server.url, timeout=30)
    _record(case, response)
    case.validate_response(response)  # every check, positive data acceptance included


def test_following_the_links_from_a_submitted_job(server: Harness) -> None:
    assert server.server is not None
    machine = schema.as_state_machine()
    base_url = server.server.url

    class Machine(machine):  # type: ignore[misc, valid-type]
        def call(self, case: schemathesis.Case, **kwargs: Any) -> Any:
            _checked_payloads(case)
            _not_run_during_the_test(case)
            response = case.call(base_url=base_url, timeout=30, **kwargs)
            _record(case, response)
            return response

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, **kwargs)

    Machine.run(
        settings=settings(
            # Not scaled by RELIABILITY_FUZZ_EXAMPLES: which links can be followed depends
            # on the server's state (a job may have run before the cancel comes), and long
            # runs make Hypothesis see the same choices lead to different rules
            # (FlakyStrategyDefinition), which says nothing about the server.
            max_examples=STATEFUL_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            stateful_step_count=6,
        )
    )
