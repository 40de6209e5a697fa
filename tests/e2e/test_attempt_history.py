"""Attempt history through the real server, in both worker modes: a job that fails twice
and then completes shows three attempts, the failures with their tracebacks from the
handler's own frames; in process mode a child that dies is a `crashed` attempt. The job
is found by the text of its error, newest first, and shown by `workstream jobs ID`. A
handler stopped at its timeout is a `timed_out` attempt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import StartServer
from tests.e2e.serverproc import ServerProcess, run_workstream
from tests.support import wait_until

WAIT = 60.0  # two shared cores: generous bounds, event-based waits


def submit(server: ServerProcess, job_type: str, **fields: Any) -> str:
    status, _, body = server.request("POST", "/jobs", {"type": job_type, **fields})
    assert status == 201, body
    return body["id"]


def get(server: ServerProcess, path: str) -> Any:
    status, _, body = server.request("GET", path)
    assert status == 200, body
    return body


def finished(server: ServerProcess, job_id: str) -> bool:
    return get(server, f"/jobs/{job_id}")["status"] == "completed"


@pytest.mark.parametrize("processes", ["0", "2"], ids=["threads", "processes"])
def test_a_flaky_jobs_attempts_and_tracebacks(
    start_server: StartServer, workdir: Path, processes: str
) -> None:
    server = start_server(
        env={
            "JOB_HANDLERS": "tests.e2e.history_handlers",
            "WORKER_PROCESSES": processes,
            "WORKER_COUNT": "2",
            "RETRY_BACKOFF": "0s",
        }
    )
    job_id = submit(server, "flaky", max_retries=3)
    wait_until(lambda: finished(server, job_id), WAIT, "the third attempt completes")

    history = get(server, f"/jobs/{job_id}/attempts")
    assert [(a["number"], a["outcome"]) for a in history] == [
        (1, "failed"),
        (2, "failed"),
        (3, "completed"),
    ]
    for attempt in history[:2]:
        number = attempt["number"]
        assert attempt["error"] == f"RuntimeError: Disk full on attempt {number}"
        assert attempt["error_class"] == "RuntimeError"
        trace = attempt["traceback"]
        assert trace.startswith("Traceback (most recent call last):")
        assert "history_handlers.py" in trace and "in _check_disk" in trace
        assert trace.rstrip().endswith(f"RuntimeError: Disk full on attempt {number}")
    for attempt in history:
        assert attempt["node"] and attempt["worker"]
        assert attempt["started_at"] <= attempt["finished_at"]
        assert (attempt["pid"] is None) == (processes == "0")
    assert history[2]["traceback"] is None and history[2]["error"] is None

    found = get(server, "/jobs?error=disk%20FULL&status=completed")
    assert [job["id"] for job in found] == [job_id]  # last_error is kept after success

    shown = run_workstream(
        workdir, "jobs", job_id, "--attempts", env={**server.env, "WORKSTREAM_URL": server.url}
    )
    assert shown.returncode == 0, shown.stderr
    assert "attempt 1: failed" in shown.stdout and "attempt 3: completed" in shown.stdout
    assert "in _check_disk" in shown.stdout


def test_a_dying_worker_process_and_a_timeout_are_attempts_of_their_own_kinds(
    start_server: StartServer, workdir: Path
) -> None:
    server = start_server(
        env={
            "JOB_HANDLERS": "tests.e2e.history_handlers",
            "WORKER_PROCESSES": "1",
            "WORKER_COUNT": "2",
            "RETRY_BACKOFF": "0s",
        }
    )
    job_id = submit(server, "exit_once")
    wait_until(lambda: finished(server, job_id), WAIT, "the retry completes")
    spun = submit(server, "spin_once")
    wait_until(lambda: finished(server, spun), WAIT, "the retry after the timeout completes")
    stopped, again = get(server, f"/jobs/{spun}/attempts")
    assert (stopped["outcome"], stopped["error_class"]) == ("timed_out", "TimeoutError")
    assert stopped["error"] == "TimeoutError: the handler ran longer than its timeout of 1s"
    assert stopped["duration_ms"] >= 1000 and again["outcome"] == "completed"

    first, second = get(server, f"/jobs/{job_id}/attempts")
    assert (first["outcome"], first["error_class"]) == ("crashed", "WorkerProcessDied")
    assert first["error"].startswith("worker process died") and first["pid"] is not None
    assert first["traceback"] is None
    assert second["outcome"] == "completed" and second["pid"] != first["pid"]

    listed = run_workstream(
        workdir, "jobs", "--json", "--limit", "1", env={**server.env, "WORKSTREAM_URL": server.url}
    )
    assert json.loads(listed.stdout)[0]["id"] == spun  # newest first
