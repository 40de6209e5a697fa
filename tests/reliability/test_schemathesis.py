"""API fuzzing in the default run: schemathesis (a third-party tool) generates requests from
the API description -- valid ones and, deliberately, invalid ones -- sends them to the
real server (a `workstream serve` subprocess on a temporary SQLite database) and checks
every answer: no 5xx, status codes, headers and bodies as documented, invalid input
refused. The description is the one the server serves at /openapi.json (asserted first).

Bounded: MAX_EXAMPLES per operation (RELIABILITY_FUZZ_EXAMPLES to change it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.reliability.conftest import COLLECTOR
from tests.reliability.harness import Harness
from workstream.http.openapi import openapi_document

MAX_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "40"))

schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    world = Harness(Path(tmp_path_factory.mktemp("fuzz")), collector=COLLECTOR)
    world.start(JOB_QUEUE_CAPACITY="100000", WORKER_COUNT="2")
    status, _, served = world.request("GET", "/openapi.json")
    assert status == 200 and served == openapi_document()
    yield world
    world.stop_all()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_honours_its_openapi_description(server: Harness, case: schemathesis.Case) -> None:
    assert server.server is not None
    response = case.call(base_url=server.server.url, timeout=30)
    if response.status_code >= 400:
        COLLECTOR.add(
            f"fuzz {case.method} {case.path}",
            response.status_code,
            response.headers,
            response.content,
        )
    # Every check but one: "schema-valid data must be accepted" cannot hold for two
    # refusals the schema cannot express -- a job type with no registered handler (422
    # unknown_job_type; the types depend on JOB_HANDLERS) and a cursor this server did
    # not issue (400 invalid_cursor). Both are documented on the operation.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
