"""The extension API end to end: the worked examples in `examples/` loaded by a real
`workstream serve` process through EXTENSIONS, their settings from the environment and
from config file tables, and the ways start-up must refuse (exit 2, naming the culprit).

Every wait is on a log line or a poll with a deadline; no sleep stands in for one."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import StartServer
from tests.e2e.serverproc import ServerProcess, run_workstream
from tests.support import wait_until

EXAMPLES = "examples.audit_trail,examples.failure_watchdog"
HANDLERS = "tests.e2e.probe_handlers"
BAD = "tests.e2e.bad_extensions"
WATCHDOG_FAST = {  # alert after two failures, checked ten times a second
    "FAILURE_WATCHDOG_THRESHOLD": "2",
    "FAILURE_WATCHDOG_CHECK_EVERY": "100ms",
    "FAILURE_WATCHDOG_WINDOW": "10m",
}


def submit(server: ServerProcess, job_type: str, payload: Any = None, **fields: Any) -> str:
    status, _, job = server.request(
        "POST", "/jobs", {"type": job_type, "payload": payload, **fields}
    )
    assert status == 201, job
    return job["id"]


def audit_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()[: text.count("\n")]]  # whole lines


def audit_events(path: Path, job_id: str) -> list[str]:
    return [line["event"] for line in audit_lines(path) if line["job_id"] == job_id]


def alert_samples(server: ServerProcess) -> dict[str, float]:
    """`workstream_failure_alert` samples from /metrics, by job type."""
    status, _, text = server.request("GET", "/metrics")
    assert status == 200
    found = re.findall(r"^workstream_failure_alert\{([^}]*)\} (\S+)$", text, re.MULTILINE)
    samples = {}
    for labels, value in found:
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        assert pairs.get("node"), labels  # the server adds its node label to extensions' too
        samples[pairs["type"]] = float(value)
    return samples


def test_both_examples_run_in_a_real_server(start_server: StartServer, workdir: Path) -> None:
    server = start_server(env={"EXTENSIONS": EXAMPLES, "JOB_HANDLERS": HANDLERS, **WATCHDOG_FAST})
    started = server.wait_for_log("extension_started", extension="examples.failure_watchdog")
    assert started["routes"] == ["/ext/failure_watchdog/alerts"]
    assert server.wait_for_log("extension_started", extension="examples.audit_trail")["actors"] == 1

    ok = submit(server, "echo", {"n": 1})
    bad = [submit(server, "probe", {"fail": True}, max_retries=0) for _ in range(2)]

    alert = server.wait_for_log("failure_alert", type="probe")
    assert alert["level"] == "warning"
    assert alert["logger"] == "workstream.ext.failure_watchdog"
    assert (alert["failures"], alert["threshold"]) == (2, 2)
    assert alert_samples(server) == {"probe": 1.0}
    status, _, body = server.request("GET", "/ext/failure_watchdog/alerts")
    assert status == 200
    assert body["alerts"] == ["probe"] and body["failures"] == {"probe": 2}
    assert body["threshold"] == 2 and body["window_seconds"] == 600

    trail = workdir / "data" / "audit.jsonl"  # the default path, in the working directory
    wait_until(
        lambda: audit_events(trail, ok) == ["job_created", "job_completed"],
        20,
        "the echo job's audit lines",
    )
    for job_id in bad:
        wait_until(
            lambda job_id=job_id: audit_events(trail, job_id) == ["job_created", "job_failed"],
            20,
            "the failed job's audit lines",
        )
    failed = next(line for line in audit_lines(trail) if line["event"] == "job_failed")
    assert failed["final"] is True and "probe failed" in failed["error"]

    server.stop()
    assert server.proc is not None and server.proc.returncode == 0
    assert audit_lines(workdir / "data" / "audit.jsonl")  # closed cleanly, still there


def test_extension_settings_come_from_config_file_tables(
    start_server: StartServer, workdir: Path
) -> None:
    config = workdir / "ws.toml"
    config.write_text(
        f'extensions = "{EXAMPLES}"\n'
        f'job_handlers = "{HANDLERS}"\n'
        "\n[audit_trail]\n"
        'path = "trail/audit.jsonl"\n'
        "\n[failure_watchdog]\n"
        "threshold = 1\n"
        'window = "1s"\n'
        'check_every = "100ms"\n',
        encoding="utf-8",
    )
    server = start_server(args=["--config", str(config)])
    job_id = submit(server, "probe", {"fail": True}, max_retries=0)

    alert = server.wait_for_log("failure_alert", type="probe")
    assert (alert["failures"], alert["threshold"], alert["window_seconds"]) == (1, 1, 1.0)
    # One second later the failure has left the window: the alert clears, once.
    cleared = server.wait_for_log("failure_alert_cleared", type="probe", timeout=10)
    assert cleared["failures"] == 0
    assert alert_samples(server) == {"probe": 0.0}
    status, _, body = server.request("GET", "/ext/failure_watchdog/alerts")
    assert (status, body["alerts"], body["failures"]) == (200, [], {})
    wait_until(
        lambda: (
            audit_events(workdir / "trail" / "audit.jsonl", job_id) == ["job_created", "job_failed"]
        ),
        20,
        "the audit lines at the path from [audit_trail]",
    )
    assert not (workdir / "data" / "audit.jsonl").exists()


def test_middleware_that_raises_does_not_lose_the_job(start_server: StartServer) -> None:
    server = start_server(
        env={
            "WORKER_PROCESSES": "0",  # extension middleware objects run with threads only
            "WORKER_MIDDLEWARE": f"{BAD}.raising_middleware:RaisesBefore,"
            f"{BAD}.raising_middleware:RaisesAfter",
            "EXTENSIONS": "examples.middleware_timing",
            "MIDDLEWARE_TIMING_SLOW": "20ms",
        }
    )
    fast = submit(server, "echo", {"n": 1}, max_retries=0)
    slow = submit(server, "sleep", {"seconds": 0.05}, max_retries=0)
    for job_id in (fast, slow):
        server.wait_for_log("job_completed", job_id=job_id)
        status, _, job = server.request("GET", f"/jobs/{job_id}")
        assert (status, job["status"]) == (200, "completed")
    assert server.request("GET", f"/jobs/{fast}")[2]["result"] == {"n": 1}
    before = server.wait_for_log("middleware_error", job_id=fast, hook="before")
    assert before["middleware"] == "RaisesBefore" and before["level"] == "error"
    assert server.wait_for_log("middleware_error", job_id=fast, hook="after")["middleware"] == (
        "RaisesAfter"
    )
    # The extension's middleware ran too, after the failing ones.
    slow_line = server.wait_for_log("slow_handler", job_id=slow)
    assert slow_line["type"] == "sleep" and slow_line["duration_ms"] >= 50
    status, _, totals = server.request("GET", "/ext/middleware_timing")
    assert status == 200
    assert totals["echo"]["calls"] == 1 and totals["sleep"]["calls"] == 1
    assert totals["sleep"]["max_seconds"] >= 0.05 and totals["echo"]["failed"] == 0


def refused(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `serve` expecting it to refuse to start (it must not get as far as listening)."""
    done = run_workstream(
        workdir, "serve", *args, env={**ServerProcess(workdir).env, **env}, timeout=30
    )
    assert '"server_started"' not in done.stderr
    return done


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (f"{BAD}.no_such_module", f"EXTENSIONS: cannot import module '{BAD}.no_such_module'"),
        (
            f"{BAD}.import_fails",
            f"EXTENSIONS: module '{BAD}.import_fails' failed while importing: RuntimeError",
        ),
        (
            f"{BAD}.setup_raises",
            f"EXTENSIONS: {BAD}.setup_raises.setup failed: RuntimeError: setup refused to run",
        ),
    ],
    ids=["missing", "import-raises", "setup-raises"],
)
def test_a_broken_extension_stops_start_up_with_exit_2(
    workdir: Path, module: str, message: str
) -> None:
    done = refused(workdir, {"EXTENSIONS": f"examples.audit_trail,{module}"})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_a_bad_extension_setting_stops_start_up_naming_it(workdir: Path) -> None:
    done = refused(workdir, {"EXTENSIONS": EXAMPLES, "FAILURE_WATCHDOG_THRESHOLD": "abc"})
    assert done.returncode == 2, done.stderr
    assert "invalid FAILURE_WATCHDOG_THRESHOLD = 'abc' (environment)" in done.stderr


def test_an_unknown_config_table_stops_start_up(workdir: Path) -> None:
    config = workdir / "ws.toml"
    config.write_text(
        f'extensions = "{EXAMPLES}"\n\n[failure_watchdgo]\nthreshold = 3\n', encoding="utf-8"
    )
    done = refused(workdir, {}, "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert "unknown section [failure_watchdgo]" in done.stderr


def test_an_unknown_key_in_an_extension_table_stops_start_up(workdir: Path) -> None:
    config = workdir / "ws.toml"
    config.write_text(
        f'extensions = "{EXAMPLES}"\n\n[failure_watchdog]\nthreshhold = 3\n', encoding="utf-8"
    )
    done = refused(workdir, {}, "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert "unknown setting 'threshhold' in [failure_watchdog]" in done.stderr


def test_a_setup_that_raises_after_starting_an_actor_still_exits_2(workdir: Path) -> None:
    done = run_workstream(
        workdir,
        "serve",
        env={**ServerProcess(workdir).env, "EXTENSIONS": f"{BAD}.leaks_actor"},
        timeout=10,
    )
    assert done.returncode == 2
    assert f"{BAD}.leaks_actor.setup failed" in done.stderr


def test_the_audit_trail_sees_jobs_recovered_at_start_up(
    start_server: StartServer, workdir: Path
) -> None:
    first = start_server(env={"JOB_HANDLERS": HANDLERS})
    job_id = submit(first, "probe", {"sleep": 60})
    first.wait_for_log("job_started", job_id=job_id)
    first.kill()  # the attempt is interrupted: the next start recovers it

    second = start_server(
        env={"JOB_HANDLERS": HANDLERS, "EXTENSIONS": "examples.audit_trail"},
        args=["--shutdown-timeout", "100ms"],
    )
    second.wait_for_log("job_recovered", job_id=job_id)
    second.stop()  # the audit trail is flushed and closed
    assert "job_recovered" in audit_events(workdir / "data" / "audit.jsonl", job_id)
