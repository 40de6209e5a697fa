"""wait(): polls until the job is finished, reports progress, rides out restarts, gives up on
time. Job states are scripted per poll or changed by the test; nothing sleeps to synchronise."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from workstream.client import ApiError, Client, NotFoundError, ServerUnreachable, WaitTimeout

BOUND = 5.0  # seconds: the longest any wait here may take
FAST = {"poll_interval": 0.001}


def test_returns_a_completed_job_and_reports_each_poll(client, stub) -> None:
    job = stub.add_job()
    stub.script_states(
        job["id"],
        {},
        {"status": "processing", "attempts": 1},
        {"status": "completed", "result": 42, "run_at": None},
    )
    seen: list[tuple[str, float]] = []
    done = client.wait(
        job["id"], BOUND, on_progress=lambda j, elapsed: seen.append((j["status"], elapsed)), **FAST
    )
    assert (done["status"], done["result"]) == ("completed", 42)
    assert [status for status, _ in seen] == ["pending", "processing", "completed"]
    elapsed = [e for _, e in seen]
    assert elapsed == sorted(elapsed) and all(0 <= e < BOUND for e in elapsed)
    assert len(stub.sent("GET")) == 3


def test_returns_a_cancelled_job(client, stub) -> None:
    job = stub.add_job(status="cancelled", run_at=None)
    assert client.wait(job["id"], BOUND, **FAST)["status"] == "cancelled"


def test_returns_a_job_failed_for_good(client, stub) -> None:
    job = stub.add_job()
    stub.script_states(
        job["id"], {"status": "failed", "run_at": None, "attempts": 4, "last_error": "boom"}
    )
    done = client.wait(job["id"], BOUND, **FAST)
    assert (done["status"], done["last_error"]) == ("failed", "boom")
    assert len(stub.requests) == 1


def test_keeps_waiting_past_a_failure_with_a_retry_scheduled(client, stub) -> None:
    job = stub.add_job()
    retry_at = "2030-01-01T00:00:00.000000Z"
    stub.script_states(
        job["id"],
        {"status": "failed", "run_at": retry_at, "attempts": 1, "last_error": "flaky"},
        {"status": "failed", "run_at": retry_at},
        {"status": "pending"},
        {"status": "completed", "run_at": None, "attempts": 2},
    )
    statuses: list[str] = []
    done = client.wait(
        job["id"], BOUND, on_progress=lambda j, _: statuses.append(j["status"]), **FAST
    )
    assert statuses == ["failed", "failed", "pending", "completed"]
    assert (done["status"], done["attempts"], done["last_error"]) == ("completed", 2, "flaky")


def test_returns_once_the_job_changes_under_it(client, stub) -> None:
    """The test, not a script, finishes the job while a waiter polls in another thread."""
    job = stub.add_job()
    outcome: dict[str, object] = {}

    def waiter() -> None:
        try:
            outcome["job"] = client.wait(job["id"], BOUND, poll_interval=0.01)
        except BaseException as exc:  # reported below, on the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=waiter)
    thread.start()
    stub.wait_for_requests(lambda requests: len(requests) >= 2)  # polled, still pending
    stub.update(job["id"], status="completed", run_at=None, result="ok")
    thread.join(timeout=BOUND)
    assert not thread.is_alive()
    assert "error" not in outcome
    assert outcome["job"]["result"] == "ok"


def test_times_out_with_the_last_seen_job(client, stub) -> None:
    job = stub.add_job()
    progress: list[str] = []
    with pytest.raises(WaitTimeout) as caught:
        client.wait(job["id"], 0.05, on_progress=lambda j, _: progress.append(j["status"]), **FAST)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert (error.job_id, error.timeout) == (job["id"], 0.05)
    assert error.job["status"] == "pending"
    assert "did not finish within 0.05s" in str(error)
    assert "pending" in str(error)
    assert progress and set(progress) == {"pending"}


def test_zero_timeout_still_polls_once(client, stub) -> None:
    done = stub.add_job(status="completed", run_at=None)
    assert client.wait(done["id"], 0)["status"] == "completed"
    pending = stub.add_job()
    with pytest.raises(WaitTimeout):
        client.wait(pending["id"], 0)


def test_rides_out_503_and_dropped_connections(client, stub) -> None:
    job = stub.add_job()
    path = f"/jobs/{job['id']}"
    stub.script("GET", path, 503, {"error": "shutting down", "code": "shutting_down"})
    stub.script("GET", path, action="drop")
    stub.script("GET", path, 502, b"Bad Gateway")
    stub.update(job["id"], status="completed", run_at=None)
    calls: list[str] = []
    done = client.wait(job["id"], BOUND, on_progress=lambda j, _: calls.append(j["status"]), **FAST)
    assert done["status"] == "completed"
    assert calls == ["completed"]  # progress is reported for answers only
    assert len(stub.requests) == 4


def test_honours_retry_after_within_the_deadline(client, stub) -> None:
    job = stub.add_job()
    busy = {"error": "busy", "code": "service_busy"}
    stub.script("GET", f"/jobs/{job['id']}", 503, busy, headers={"Retry-After": "30"})
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.wait(job["id"], 0.2, **FAST)
    assert time.monotonic() - started < BOUND  # the 30 s hint was cut to the deadline
    # The hint replaced the 1 ms interval: one look after the 503, at the deadline, not dozens.
    assert 2 <= len(stub.requests) <= 3
    assert caught.value.job["status"] == "pending"


def test_times_out_on_errors_naming_the_last_one(client, stub) -> None:
    job = stub.add_job()
    for _ in range(1000):  # more than the polls that fit in the timeout
        stub.script("GET", f"/jobs/{job['id']}", 503, {"error": "busy", "code": "service_busy"})
    with pytest.raises(WaitTimeout, match="last error: busy") as caught:
        client.wait(job["id"], 0.05, **FAST)
    assert caught.value.job is None
    assert isinstance(caught.value.__cause__, ApiError)


def test_unreachable_server_until_the_deadline() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", timeout=1)
    with pytest.raises(WaitTimeout, match="cannot reach") as caught:
        client.wait("some-id", 0.05, **FAST)
    assert caught.value.job is None
    assert isinstance(caught.value.__cause__, ServerUnreachable)


def test_other_errors_are_not_retried(client, stub) -> None:
    with pytest.raises(NotFoundError):
        client.wait("missing", BOUND, **FAST)
    assert len(stub.requests) == 1


def test_rejects_a_bad_poll_interval(client) -> None:
    with pytest.raises(ValueError):
        client.wait("x", 1, poll_interval=0)
