"""Scenario 19 (error hygiene), run last (file name order): every error response the
reliability run collected -- load, faults, bad input, tokens -- plus a sweep of its own,
scanned for tracebacks, file paths, SQL, library names and versions; every 5xx has a
request id that the server logged."""

from __future__ import annotations

import json

from tests.reliability.checker import Figures
from tests.reliability.conftest import COLLECTOR
from tests.reliability.harness import Harness, report
from tests.reliability.hygiene import scan

OWN_REQUESTS = [
    ("GET", "/nowhere", None),
    ("DELETE", "/jobs", None),
    ("PUT", "/jobs/123", None),
    ("GET", "/jobs/not-a-uuid", None),
    ("GET", "/jobs/00000000-0000-0000-0000-000000000000", None),
    ("POST", "/jobs/00000000-0000-0000-0000-000000000000/cancel", None),
    ("POST", "/jobs/00000000-0000-0000-0000-000000000000/retry", {"x": 1}),
    ("GET", "/jobs?limit=0", None),
    ("GET", "/jobs?limit=abc", None),
    ("GET", "/jobs?status=weird", None),
    ("GET", "/jobs?cursor=%00%ff", None),
    ("GET", "/jobs?cursor=%27%20OR%201=1%20--", None),
    ("GET", "/jobs?nope=1", None),
    ("POST", "/jobs", {"type": "no_such"}),
    ("POST", "/jobs/batch", {"jobs": []}),
    ("POST", "/jobs/batch", {"jobs": [{"type": "echo"}] * 1001}),
    ("POST", "/jobs", {"type": "echo", "payload": {"a": 1}, "delay": "later"}),
]


def test_no_error_response_of_the_whole_run_leaks_internals(harness: Harness) -> None:
    server = harness.start()
    for method, path, body in OWN_REQUESTS:
        status, _, _ = harness.request(method, path, body)
        assert 400 <= status < 500, (method, path, status)
    # A 5xx must carry a request id that is in the log.
    fives = [r for r in COLLECTOR.responses if r.status >= 500]
    for response in fives:
        request_id = json.loads(response.body).get("request_id")
        assert request_id and response.headers.get("x-request-id") == request_id
    leaks = scan(COLLECTOR.responses)
    fig = Figures("error_hygiene", submitted=len(COLLECTOR.responses))
    fig.illegal = len(leaks)
    fig.extra.update(
        error_responses=len(COLLECTOR.responses),
        statuses="+".join(str(s) for s in sorted({r.status for r in COLLECTOR.responses})),
        leaks=len(leaks),
    )
    report(fig)
    assert server.proc is not None
    assert not leaks, "\n".join(leaks[:20])
