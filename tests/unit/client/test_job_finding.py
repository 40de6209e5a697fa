"""Finding jobs from the client and the CLI: order, filters, the next page's cursor, and a
job's attempts (issue 14)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.unit.client.conftest import Stub
from workstream import cli
from workstream.client import Client, NotFoundError, Page

ATTEMPTS = [
    {
        "number": 1,
        "outcome": "failed",
        "started_at": "2027-01-15T08:00:00.000000Z",
        "finished_at": "2027-01-15T08:00:01.000000Z",
        "duration_ms": 1000.0,
        "node": "node-a",
        "worker": "process-1.0",
        "pid": 4242,
        "error": "RuntimeError: boom",
        "error_class": "RuntimeError",
        "traceback": (
            'Traceback (most recent call last):\n  File "h.py", line 3\nRuntimeError: boom\n'
        ),
    },
    {
        "number": 2,
        "outcome": "completed",
        "started_at": "2027-01-15T08:00:03.000000Z",
        "finished_at": "2027-01-15T08:00:04.000000Z",
        "duration_ms": 2.5,
        "node": "node-a",
        "worker": "process-1.1",
        "pid": 4242,
        "error": None,
        "error_class": None,
        "traceback": None,
    },
]


def test_page_sends_every_filter_and_returns_the_next_cursor(client: Client, stub: Stub) -> None:
    for _ in range(3):
        stub.add_job()
    page = client.page(
        limit=2,
        order="oldest",
        status="pending",
        type="echo",
        created_after=datetime(2027, 1, 15, 9, tzinfo=timezone(timedelta(hours=1))),
        created_before="2027-01-16T00:00:00Z",
        id_prefix="ab",
        idempotency_key="k-1",
        error="disk full",
    )
    assert isinstance(page, Page) and len(page.jobs) == 2
    assert page.more and page.next_cursor == "2"
    sent = stub.sent("GET", "/jobs")[-1].query
    assert sent == {
        "status": ["pending"],
        "type": ["echo"],
        "limit": ["2"],
        "order": ["oldest"],
        "created_after": ["2027-01-15T08:00:00.000000Z"],  # in UTC
        "created_before": ["2027-01-16T00:00:00Z"],
        "id_prefix": ["ab"],
        "idempotency_key": ["k-1"],
        "error": ["disk full"],
    }
    last = client.page(limit=2, cursor=page.next_cursor)
    assert len(last.jobs) == 1 and last.next_cursor is None and not last.more


def test_a_naive_time_and_an_unknown_filter_are_refused_before_sending(
    client: Client, stub: Stub
) -> None:
    with pytest.raises(ValueError, match="created_after"):
        client.page(created_after=datetime(2027, 1, 15))
    with pytest.raises(TypeError, match="colour"):
        client.list(colour="red")
    assert stub.requests == []


def test_iter_jobs_passes_filters_to_every_page(client: Client, stub: Stub) -> None:
    for _ in range(5):
        stub.add_job()
    got = list(client.iter_jobs(page_size=2, order="oldest", error="boom"))
    assert len(got) == 5
    pages = stub.sent("GET", "/jobs")
    assert len(pages) == 3
    assert all(r.query["order"] == ["oldest"] and r.query["error"] == ["boom"] for r in pages)


def test_attempts_of_a_job(client: Client, stub: Stub) -> None:
    job = stub.add_job()
    stub.attempts[job["id"]] = ATTEMPTS
    assert client.attempts(job["id"]) == ATTEMPTS
    with pytest.raises(NotFoundError):
        client.attempts("no-such-job")


def test_cli_lists_with_filters_and_says_how_to_continue(
    stub: Stub, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        stub.add_job()
    args = ["--oldest", "--status", "pending", "--error", "boom", "--limit", "2"]
    assert cli.main(["jobs", *args, "--id-prefix", "AB", "--url", stub.url]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0].startswith("ID ")
    assert len(out.out.splitlines()) == 3  # header and two jobs
    assert out.err.strip() == "more jobs match: add --cursor 2"
    sent = stub.sent("GET", "/jobs")[-1].query
    assert sent["order"] == ["oldest"] and sent["error"] == ["boom"]
    assert sent["id_prefix"] == ["AB"] and sent["status"] == ["pending"]

    assert cli.main(["jobs", "--limit", "2", "--cursor", "2", "--json", "--url", stub.url]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == 1
    assert out.err == ""  # the last page: nothing more to say
    assert stub.sent("GET", "/jobs")[-1].query["cursor"] == ["2"]


def test_cli_newest_and_oldest_exclude_each_other(
    stub: Stub, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["jobs", "--newest", "--oldest", "--url", stub.url])
    assert stopped.value.code == 2
    assert cli.main(["jobs", "--newest", "--url", stub.url]) == 0
    assert stub.sent("GET", "/jobs")[-1].query["order"] == ["newest"]


def test_cli_shows_a_job_with_its_history(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    job = stub.add_job()
    stub.attempts[job["id"]] = ATTEMPTS
    assert cli.main(["jobs", job["id"], "--url", stub.url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == job["id"] and shown["history"] == ATTEMPTS

    assert cli.main(["jobs", job["id"], "--attempts", "--url", stub.url]) == 0
    text = capsys.readouterr().out
    assert "attempt 1: failed" in text and "error: RuntimeError: boom" in text
    assert "  Traceback (most recent call last):" in text  # raw, indented, not JSON-escaped
    assert "attempt 2: completed" in text and "took 2.5 ms" in text
    assert "pid 4242" in text


def test_cli_says_a_job_has_no_attempts_yet(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    job = stub.add_job()
    assert cli.main(["jobs", job["id"], "--attempts", "--url", stub.url]) == 0
    assert capsys.readouterr().out.strip() == "no attempts yet"


def test_times_are_sent_in_utc() -> None:
    from workstream.client.api import _moment

    assert _moment(datetime(2027, 1, 15, 8, tzinfo=UTC), "x") == "2027-01-15T08:00:00.000000Z"
