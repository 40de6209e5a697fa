"""The real server in process mode: a spinning handler is stopped at its timeout, a child
that dies fails only its attempt while the API answers, a child past WORKER_MAX_MEMORY is
replaced with nothing lost, SIGTERM drains, and SIGKILL of the server leaves no child."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.conftest import StartServer
from tests.e2e.serverproc import ServerProcess, run_workstream
from tests.support import wait_until

WAIT = 60.0  # two shared cores: generous bounds, event-based waits


def settings(workdir: Path, **extra: str) -> dict[str, str]:
    return {
        "JOB_HANDLERS": "tests.e2e.proc_handlers",
        "PROBE_LEDGER": str(workdir / "ledger"),
        "WORKER_PROCESSES": "2",
        "WORKER_COUNT": "4",
        "RETRY_BACKOFF": "0s",
        **extra,
    }


def submit(server: ServerProcess, job_type: str, payload: Any = None) -> str:
    status, _, body = server.request("POST", "/jobs", {"type": job_type, "payload": payload or {}})
    assert status == 201, body
    return body["id"]


def job(server: ServerProcess, job_id: str) -> dict[str, Any]:
    status, _, body = server.request("GET", f"/jobs/{job_id}")
    assert status == 200, body
    return body


def completed(server: ServerProcess, *ids: str) -> bool:
    return all(job(server, job_id)["status"] == "completed" for job_id in ids)


def ledger(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "ledger"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def child_pids(server: ServerProcess) -> set[int]:
    return {r["pid"] for r in server.logs if r.get("event") == "worker_process_started"}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie is gone
    except (FileNotFoundError, IndexError):
        return False


def test_a_spinning_handler_is_stopped_at_its_timeout_and_retried(
    start_server: StartServer, workdir: Path
) -> None:
    server = start_server(env=settings(workdir))
    other = submit(server, "nap", {"seconds": 0.1})
    job_id = submit(server, "spin")
    started = server.wait_for_log("job_started", timeout=WAIT, job_id=job_id, attempt=1)
    failed = server.wait_for_log("job_failed", timeout=WAIT, job_id=job_id, attempt=1)
    assert failed["error"] == "TimeoutError: the handler ran longer than its timeout of 1s"
    server.wait_for_log("worker_process_exited", timeout=WAIT, cause="timed_out")
    wait_until(lambda: completed(server, job_id, other), WAIT, "the retry completes")
    assert job(server, job_id)["attempts"] == 2
    seconds = _seconds(failed["ts"]) - _seconds(started["ts"])
    assert 0.9 <= seconds <= 1 + 2 + 2  # timeout + the kill grace + a slow box's slack
    assert server.request("GET", "/health")[0] == 200


def test_a_child_that_exits_fails_only_its_attempt_while_the_api_answers(
    start_server: StartServer, workdir: Path
) -> None:
    # One slot per child: the jobs below never share the dying child.
    server = start_server(env=settings(workdir, WORKER_COUNT="2"))
    job_id = submit(server, "exit_once")
    naps = [submit(server, "nap", {"seconds": 0.3}) for _ in range(4)]
    failed = server.wait_for_log("job_failed", timeout=WAIT, job_id=job_id, attempt=1)
    assert failed["error"] == "worker process died (exit code 1)"
    assert server.request("GET", "/health")[0] == 200
    wait_until(lambda: completed(server, job_id, *naps), WAIT, "every job completes")
    assert all(job(server, nap)["attempts"] == 1 for nap in naps)
    exited = server.wait_for_log("worker_process_exited", timeout=WAIT, cause="crashed")
    assert exited["exit"] == "exit code 1" and exited["failed_attempts"] >= 1


def test_sigkill_of_a_child_fails_only_its_attempt(
    start_server: StartServer, workdir: Path
) -> None:
    server = start_server(env=settings(workdir, WORKER_COUNT="2"))  # one slot per child
    job_id = submit(server, "hold_once")
    [entry] = wait_until(
        lambda: [e for e in ledger(workdir) if e["job_id"] == job_id], WAIT, "the attempt"
    )
    others = [submit(server, "nap", {"seconds": 0.1}) for _ in range(3)]
    os.kill(entry["pid"], signal.SIGKILL)
    failed = server.wait_for_log("job_failed", timeout=WAIT, job_id=job_id, attempt=1)
    assert failed["error"] == "worker process died (signal 9)"
    assert server.request("GET", "/health")[0] == 200
    wait_until(lambda: completed(server, job_id, *others), WAIT, "every job completes")
    assert job(server, job_id)["attempts"] == 2
    assert all(job(server, other)["attempts"] == 1 for other in others)
    status, _, metrics = server.request("GET", "/metrics", headers={"Accept": "application/json"})
    assert status == 200
    pool = metrics["worker_processes"]
    assert [child["name"] for child in pool] == ["worker-1", "worker-2"]
    assert sum(child["restarts"]["crashed"] for child in pool) == 1
    assert sum(child["jobs_run"] for child in pool) == 4  # the killed attempt never reported
    _, _, text = server.request("GET", "/metrics", headers={"Accept": "text/plain"})
    assert 'cause="crashed"' in text and "workstream_worker_process_rss_bytes" in text


def test_a_child_past_max_memory_is_replaced_without_losing_a_job(
    start_server: StartServer, workdir: Path
) -> None:
    env = settings(workdir, WORKER_PROCESSES="1", WORKER_COUNT="2", WORKER_MAX_MEMORY="120MB")
    server = start_server(env=env)
    first_pid = next(iter(child_pids(server)))
    hogs = [submit(server, "hog", {"mb": 150})]
    naps = [submit(server, "nap", {"seconds": 0.2}) for _ in range(6)]
    server.wait_for_log("worker_process_recycling", timeout=WAIT, reason="max_memory")
    server.wait_for_log("worker_process_exited", timeout=WAIT, cause="recycled", pid=first_pid)
    wait_until(lambda: completed(server, *hogs, *naps), WAIT, "every job completes")
    assert all(job(server, item)["attempts"] == 1 for item in hogs + naps)  # none lost, none rerun
    wait_until(lambda: len(child_pids(server)) == 2, WAIT, "a replacement child")
    assert not alive(first_pid)


def test_sigterm_drains_then_stops_the_children(start_server: StartServer, workdir: Path) -> None:
    server = start_server(env=settings(workdir))
    pids = child_pids(server)
    job_id = submit(server, "nap", {"seconds": 1})
    server.wait_for_log("job_started", timeout=WAIT, job_id=job_id)
    server.signal(signal.SIGTERM)
    assert server.wait(WAIT) == 0
    done = server.wait_for_log("shutdown_complete", timeout=5)
    assert done["finished_during_drain"] == 1 and done["returned_to_pending"] == 0
    assert not any(alive(pid) for pid in pids)


def test_sigkill_of_the_server_leaves_no_child(start_server: StartServer, workdir: Path) -> None:
    server = start_server(env=settings(workdir))
    submit(server, "hold_once")
    wait_until(lambda: ledger(workdir), WAIT, "a child running a job")
    pids = child_pids(server)
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    server.kill()
    wait_until(lambda: not any(alive(pid) for pid in pids), WAIT, "no orphan child")


def _seconds(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def test_extension_middleware_objects_are_refused_in_process_mode(workdir: Path) -> None:
    env = {**ServerProcess(workdir).env, **settings(workdir)}
    env["EXTENSIONS"] = "examples.middleware_timing"
    done = run_workstream(workdir, "serve", env=env, timeout=WAIT)
    assert done.returncode == 2, done.stderr
    assert "EXTENSIONS: examples.middleware_timing: add_middleware needs WORKER_PROCESSES=0" in (
        done.stderr
    )


def test_a_child_that_cannot_import_its_handlers_stops_start_up_with_exit_2(
    workdir: Path,
) -> None:
    env = {**ServerProcess(workdir).env, **settings(workdir)}
    env["JOB_HANDLERS"] = "tests.e2e.proc_handlers,tests.e2e.child_only_failure"
    done = run_workstream(workdir, "serve", env=env, timeout=WAIT)
    assert done.returncode == 2, done.stderr
    assert (
        "JOB_HANDLERS: module 'tests.e2e.child_only_failure' failed while importing: "
        "RuntimeError: not in a worker process"
    ) in done.stderr


def test_a_crash_loop_shows_in_health_and_metrics_and_ends_when_children_live(
    start_server: StartServer, workdir: Path
) -> None:
    flag = workdir / "crash"
    env = settings(workdir, WORKER_PROCESSES="1", WORKER_COUNT="1", CRASH_FLAG=str(flag))
    env["JOB_HANDLERS"] = "tests.e2e.proc_handlers,tests.e2e.crash_at_import"
    server = start_server(env=env)
    [first] = child_pids(server)
    flag.touch()
    os.kill(first, signal.SIGKILL)  # each replacement now dies as it imports its handlers
    server.wait_for_log("worker_process_crash_loop", timeout=WAIT)
    status, _, health = server.request("GET", "/health")
    assert status == 503
    assert health["reason"] == "every worker process dies at start (crash loop)", health
    _, _, text = server.request("GET", "/metrics", headers={"Accept": "text/plain"})
    [loop] = [
        line
        for line in text.splitlines()
        if line.startswith("workstream_worker_process_crash_loop{")
    ]
    assert loop.endswith(" 1.0"), loop
    job_id = submit(server, "nap", {"seconds": 0.1})  # still admitted while no child lives
    flag.unlink()  # the next replacement (after its backoff) lives
    server.wait_for_log("worker_process_recovered", timeout=WAIT)
    wait_until(lambda: server.request("GET", "/health")[0] == 200, WAIT, "/health is 200 again")
    wait_until(lambda: completed(server, job_id), WAIT, "the job waiting meanwhile completes")
    assert job(server, job_id)["attempts"] == 1
