"""Schedules with the real `workstream` command: a bad schedule stops `serve` with exit 2
naming it; a schedule from the config file is listed by `workstream schedules` and runs
by itself (SQLite, one node)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.serverproc import ServerProcess, run_workstream
from tests.support import wait_until


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('type = "echo"\ncron = "0 25 * * *"', "invalid cron expression '0 25 * * *'"),
        ('type = "echo"\ncron = "0 3 * * *"\ntimezone = "Europe/Pariss"', "unknown timezone"),
        ('type = "nope"\nevery = "1m"', "no handler for type 'nope'"),
    ],
)
def test_a_bad_schedule_stops_serve_with_exit_2_naming_it(
    workdir: Path, table: str, message: str
) -> None:
    config = workdir / "ws.toml"
    config.write_text(f"[schedules.nightly]\n{table}\n", encoding="utf-8")
    done = run_workstream(workdir, "serve", "--config", str(config), timeout=30)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("workstream: schedule 'nightly' ([schedules.nightly] in "), line
    assert message in line
    assert "Traceback" not in done.stderr


def test_a_config_file_schedule_is_listed_and_runs(workdir: Path) -> None:
    config = workdir / "ws.toml"
    config.write_text(
        '[schedules.beat]\ntype = "echo"\nevery = "1s"\npayload = { from = "beat" }\n',
        encoding="utf-8",
    )
    server = ServerProcess(workdir, env={"WORKER_PROCESSES": "0"}, args=["--config", str(config)])
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        wait_until(
            lambda: server.request("GET", "/schedules")[2]["schedules"][0]["last_job_id"],
            15,
            "the first slot of 'beat'",
        )
        table = run_workstream(workdir, "schedules", "--url", url, timeout=30)
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split()[:4] == ["NAME", "TYPE", "CRON", "TIMEZONE"]
        assert row.split()[:5] == ["beat", "echo", "@every", "1s", "UTC"]
        listed = run_workstream(workdir, "schedules", "--json", "--url", url, timeout=30)
        [beat] = json.loads(listed.stdout)
        status, _, job = server.request("GET", f"/jobs/{beat['last_job_id']}")
        assert status == 200 and job["payload"] == {"from": "beat"}
        ran = run_workstream(workdir, "schedules", "run", "beat", "--url", url, timeout=30)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["schedule"] == "beat"
        missing = run_workstream(workdir, "schedules", "run", "nope", "--url", url, timeout=30)
        assert missing.returncode == 1 and "not_found, HTTP 404" in missing.stderr
    finally:
        server.stop()
