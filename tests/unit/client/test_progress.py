"""`workstream submit --wait`: a failure that will be retried is told apart from the final
one, and both show the error."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest

from tests.unit.client.conftest import Stub
from workstream import cli
from workstream.client.progress import Progress, describe

NOW = datetime(2026, 11, 29, 9, 18, 54, tzinfo=UTC).timestamp()
JOB = {"id": "450ac338-a236-4fd9-b523-78ad279d7dbd", "status": "failed", "attempts": 1}


def test_a_failure_with_a_retry_scheduled_says_so_with_the_error() -> None:
    job = {**JOB, "run_at": "2026-11-29T09:18:55.500000Z", "last_error": "RuntimeError: boom"}
    assert describe(job, now=NOW) == (
        "job 450ac338 failed, attempt 1, will be retried (retry in 1.5s): RuntimeError: boom"
    )


def test_a_failure_for_good_says_so_with_the_error() -> None:
    job = {**JOB, "attempts": 3, "run_at": None, "last_error": "ValueError: bad\n  input"}
    assert describe(job, now=NOW) == (
        "job 450ac338 failed for good after attempt 3: ValueError: bad input"
    )


def test_a_long_error_is_cut_to_one_short_line() -> None:
    text = describe({**JOB, "run_at": None, "last_error": "x" * 5000}, now=NOW)
    assert len(text) < 300 and text.endswith("...")


def test_other_statuses_read_as_before() -> None:
    assert describe({**JOB, "status": "processing"}) == "job 450ac338 processing, attempt 1"


def test_progress_writes_a_line_per_change_not_per_countdown_tick() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    retrying = {**JOB, "run_at": "2999-01-01T00:00:00Z", "last_error": "boom"}
    for elapsed in (0.1, 0.3, 0.7):
        progress.update(retrying, elapsed)
    progress.update({**JOB, "attempts": 2, "run_at": None, "last_error": "boom"}, 1.0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "will be retried" in lines[0] and lines[0].count("boom") == 1
    assert "failed for good after attempt 2: boom" in lines[1]


def test_submit_wait_tells_a_retry_from_the_final_failure(
    stub: Stub, capsys: pytest.CaptureFixture[str]
) -> None:
    job = stub.add_job()
    stub.script("POST", "/jobs", status=201, body=job)  # the job the states below belong to
    retry_at = "2999-01-01T00:00:00.000000Z"
    stub.script_states(
        job["id"],
        {"status": "processing", "attempts": 1},
        {"status": "failed", "attempts": 1, "run_at": retry_at, "last_error": "RuntimeError: a"},
        {"status": "processing", "attempts": 2, "run_at": None},
        {"status": "failed", "attempts": 2, "run_at": None, "last_error": "RuntimeError: b"},
    )
    assert cli.main(["submit", "echo", "--wait", "--url", stub.url]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["last_error"] == "RuntimeError: b"
    lines = err.splitlines()
    assert any("failed, attempt 1, will be retried" in x and "RuntimeError: a" in x for x in lines)
    assert not any("failed for good" in line for line in lines if "attempt 1" in line)
    assert lines[-1] == (
        f"workstream: job {job['id'][:8]} failed for good after attempt 2: RuntimeError: b"
    )
