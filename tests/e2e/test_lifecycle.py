"""The real server as a child process: start-up, signals, crashes and restarts."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import StartServer
from tests.e2e.serverproc import REPO, ServerProcess, run_workstream
from tests.support import wait_until

PROBES = {"JOB_HANDLERS": "tests.e2e.probe_handlers"}


def submit(server: ServerProcess, job_type: str, payload: Any = None, **fields: Any) -> dict:
    status, _, body = server.request(
        "POST", "/jobs", {"type": job_type, "payload": payload or {}, **fields}
    )
    assert status == 201, body
    return body


def statuses(workdir: Path) -> dict[str, str]:
    """Read job statuses straight from the database file (the server may be down)."""
    conn = sqlite3.connect(workdir / "data" / "workstream.db")
    try:
        return dict(conn.execute("SELECT id, status FROM jobs").fetchall())
    finally:
        conn.close()


def job_row(workdir: Path, job_id: str) -> dict[str, Any]:
    conn = sqlite3.connect(workdir / "data" / "workstream.db")
    conn.row_factory = sqlite3.Row
    try:
        return dict(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
    finally:
        conn.close()


def ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_sigterm_drains_running_jobs_and_exits_zero(
    start_server: StartServer, workdir: Path
) -> None:
    server = start_server(env={**PROBES, "PROBE_LEDGER": str(workdir / "ledger")})
    ids = [submit(server, "probe", {"sleep": 0.5})["id"] for _ in range(3)]
    wait_until(
        lambda: sum(1 for e in ledger(workdir / "ledger") if e["outcome"] == "start") == 3,
        20,
        "all three jobs to start",
    )
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    assert time.monotonic() - started < 10
    summary = server.wait_for_log("shutdown_complete", timeout=1)
    assert summary["finished_during_drain"] == 3
    assert summary["returned_to_pending"] == 0
    assert {statuses(workdir)[job_id] for job_id in ids} == {"completed"}


def test_health_answers_503_shutting_down_while_running_jobs_drain(
    start_server: StartServer, workdir: Path
) -> None:
    # SPEC 4: /health is 503 {"status": "shutting_down"} while draining -- not a refused
    # connection: the port stays open until the running jobs are done.
    server = start_server(env={**PROBES, "PROBE_LEDGER": str(workdir / "ledger")})
    job = submit(server, "probe", {"sleep": 3})
    wait_until(lambda: ledger(workdir / "ledger"), 20, "the job to start")
    server.signal(signal.SIGTERM)
    server.wait_for_log("shutdown_started", timeout=5)

    status, headers, body = server.request("GET", "/health")
    assert (status, body["status"]) == (503, "shutting_down")
    assert headers.get("Connection") == "close"  # no client keeps a connection
    status, _, body = server.request("POST", "/jobs", {"type": "echo"})
    assert (status, body["code"]) == (503, "shutting_down")
    assert server.request("GET", f"/jobs/{job['id']}")[0] == 200  # reads still work

    assert server.wait(30) == 0
    assert statuses(workdir)[job["id"]] == "completed"
    assert server.wait_for_log("shutdown_complete", timeout=1)["finished_during_drain"] == 1


def test_sigterm_returns_jobs_past_the_timeout_to_pending_uncounted(
    start_server: StartServer, workdir: Path
) -> None:
    env = {**PROBES, "PROBE_LEDGER": str(workdir / "ledger"), "SHUTDOWN_TIMEOUT": "500ms"}
    server = start_server(env=env)
    job = submit(server, "probe", {"sleep": 30})
    wait_until(lambda: ledger(workdir / "ledger"), 20, "the long job to start")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    assert time.monotonic() - started < 0.5 + 5  # SHUTDOWN_TIMEOUT plus a margin
    row = job_row(workdir, job["id"])
    assert (row["status"], row["attempts"]) == ("pending", 0)
    # The next start runs it again, as attempt 1 once more.
    start_server(env=env)
    wait_until(lambda: len(ledger(workdir / "ledger")) == 2, 20, "the job to start again")
    assert [entry["attempt"] for entry in ledger(workdir / "ledger")] == [1, 1]


def test_sigkill_then_restart_finishes_every_acknowledged_job(
    start_server: StartServer, workdir: Path
) -> None:
    env = {
        **PROBES,
        "PROBE_LEDGER": str(workdir / "ledger"),
        "WORKER_COUNT": "4",
        "JOB_QUEUE_CAPACITY": "1000",
    }
    server = start_server(env=env)
    acked = [submit(server, "probe", {"sleep": 0.05})["id"] for _ in range(60)]
    wait_until(
        lambda: sum(1 for e in ledger(workdir / "ledger") if e["outcome"] == "done") >= 10,
        20,
        "some jobs to finish",
    )
    server.kill()  # SIGKILL with jobs running and pending
    interrupted = [job_id for job_id, status in statuses(workdir).items() if status == "processing"]
    restarted = start_server(env=env)
    wait_until(
        lambda: all(statuses(workdir).get(job_id) == "completed" for job_id in acked),
        60,
        "every acknowledged job to complete",
    )
    lost = [job_id for job_id in acked if statuses(workdir).get(job_id) != "completed"]
    assert lost == []
    runs = ledger(workdir / "ledger")
    finished = {e["job_id"] for e in runs if e["outcome"] == "done"}
    assert set(acked) <= finished
    for job_id in interrupted:  # the interrupted attempt counted: the rerun is attempt 2
        assert job_row(workdir, job_id)["attempts"] == 2
    assert restarted.wait_for_log("recovery_finished", timeout=1)["recovered"] == len(interrupted)


def test_a_handler_that_kills_the_process_ends_failed_and_others_complete(
    start_server: StartServer, workdir: Path
) -> None:
    # Threads: the handler's os._exit takes the whole server down (with worker processes
    # only its child goes: tests/e2e/test_worker_processes.py).
    env = {**PROBES, "PROBE_LEDGER": str(workdir / "ledger"), "WORKER_COUNT": "2"}
    env["WORKER_PROCESSES"] = "0"
    server = start_server(env=env)
    good = [submit(server, "probe", {})["id"] for _ in range(5)]
    poison = submit(server, "probe", {"exit": True}, max_retries=2)["id"]
    restarts = 0
    while job_row(workdir, poison)["status"] != "failed":
        assert server.wait(30) == 17  # the handler's os._exit took the server down
        restarts += 1
        assert restarts <= 3, "the poison job should be out of attempts after 3 runs"
        # Workers start before the port opens, so the poison may kill this one early too.
        server = start_server(env=env, wait=False)
        server.wait_for_log("recovery_finished")  # committed before any job runs
    server.wait_started()
    assert restarts == 3
    row = job_row(workdir, poison)
    assert row["attempts"] == 3 and row["run_at"] is None
    assert "interrupted" in row["last_error"]
    assert sum(1 for e in ledger(workdir / "ledger") if e["job_id"] == poison) == 3
    later = submit(server, "echo", {"after": "poison"})["id"]
    wait_until(
        lambda: all(statuses(workdir)[j] == "completed" for j in [*good, later]),
        30,
        "the other jobs to complete",
    )
    status, _, health = server.request("GET", "/health")
    assert status == 200 and health["status"] == "ok"


def test_a_handler_raising_system_exit_fails_its_attempt_and_the_server_lives(
    start_server: StartServer, workdir: Path
) -> None:
    server = start_server(env=PROBES)
    job = submit(server, "exit_hook", max_retries=0)
    server.wait_for_log("job_failed", job_id=job["id"])
    assert job_row(workdir, job["id"])["last_error"] == "SystemExit: 3"
    status, _, health = server.request("GET", "/health")
    assert status == 200 and health["workers"] == 10
    done = submit(server, "echo", {"still": "alive"})
    server.wait_for_log("job_completed", job_id=done["id"])


def test_a_second_server_on_the_same_database_refuses_to_start(
    start_server: StartServer,
) -> None:
    first = start_server()
    second = start_server(wait=False)
    assert second.wait(30) == 1
    assert any("in use by another WorkStream process" in line for line in second.lines)
    status, _, _ = first.request("GET", "/health")
    assert status == 200


def test_an_invalid_setting_exits_2_naming_it(workdir: Path) -> None:
    for env, named in [
        ({"WORKER_COUNT": "abc"}, "WORKER_COUNT = 'abc'"),
        ({"SWEEPER_INTERVAL": "soon"}, "SWEEPER_INTERVAL = 'soon'"),
        ({"WORKER_COUNT": "0"}, "WORKER_COUNT = '0'"),
    ]:
        done = run_workstream(workdir, "serve", env={**ServerProcess(workdir).env, **env})
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0]


def test_the_config_file_is_honoured_and_the_environment_overrides_it(
    start_server: StartServer, workdir: Path
) -> None:
    config = workdir / "config" / "workstream.toml"
    config.parent.mkdir()
    config.write_text('worker_count = 3\njob_queue_capacity = 7\nlog_format = "json"\n')
    server = start_server()
    settings = server.wait_for_log("server_started")["settings"]
    assert (settings["worker_count"], settings["job_queue_capacity"]) == (3, 7)
    assert server.request("GET", "/health")[2]["workers"] == 3
    server.stop()
    server = start_server(env={"WORKER_COUNT": "5"})
    settings = server.wait_for_log("server_started")["settings"]
    assert (settings["worker_count"], settings["job_queue_capacity"]) == (5, 7)
    assert server.request("GET", "/health")[2]["workers"] == 5


def test_metrics_parse_with_prometheus_and_match_what_happened(
    start_server: StartServer,
) -> None:
    server = start_server(env={**PROBES, "RETRY_BACKOFF": "0s", "SWEEPER_INTERVAL": "100ms"})
    ok = [submit(server, "echo", {"n": n})["id"] for n in range(5)]
    bad = submit(server, "probe", {"fail": True}, max_retries=1)["id"]
    for job_id in ok:
        server.wait_for_log("job_completed", job_id=job_id)
    server.wait_for_log("job_failed", job_id=bad, final=True)
    status, headers, text = server.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    _, _, stats = server.request("GET", "/metrics", headers={"Accept": "application/json"})
    node = stats["node"]
    assert node.count(":") == 2  # host:pid:random, this process's owner id
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("node") == node, sample
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    assert samples[("workstream_jobs_created_total", (("type", "echo"),))] == 5
    assert samples[("workstream_jobs_created_total", (("type", "probe"),))] == 1
    assert samples[("workstream_jobs_completed_total", (("type", "echo"),))] == 5
    assert samples[("workstream_jobs_failed_total", (("type", "probe"),))] == 1
    assert samples[("workstream_jobs_retried_total", (("type", "probe"),))] == 1
    assert samples[("workstream_job_attempts_failed_total", (("type", "probe"),))] == 2
    assert samples[("workstream_job_run_seconds_count", (("type", "echo"),))] == 5
    assert samples[("workstream_queue_size", ())] == 0
    assert samples[("workstream_jobs", (("status", "completed"),))] == 5
    assert (
        stats["total_jobs_created"],
        stats["jobs_completed"],
        stats["jobs_failed"],
        stats["jobs_retried"],
    ) == (6, 5, 1, 1)


def test_python_m_workstream_is_the_cli() -> None:
    done = run_workstream(REPO, "--help")
    assert done.returncode == 0
    assert all(word in done.stdout for word in ("serve", "submit", "jobs", "migrate"))
