"""The `workstream` command as a newcomer meets it: real processes, no server needed
unless a test starts one (or the client tests' stub)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.serverproc import ServerProcess, run_workstream


def test_a_short_api_token_stops_serve_with_exit_2_naming_the_setting(workdir: Path) -> None:
    env = {**ServerProcess(workdir).env, "API_TOKEN": "tiny-tok3n"}
    done = run_workstream(workdir, "serve", env=env, timeout=30)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("workstream: invalid API_TOKEN = *** (environment): ")
    assert "at least 16 characters" in line and "tiny-tok3n" not in done.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_serve_help_works_in_a_real_process(workdir: Path, flag: str) -> None:
    done = run_workstream(workdir, "serve", flag, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: workstream serve") and "RETRY_BACKOFF" in done.stdout
    assert "Traceback" not in done.stderr


# -- JOB_HANDLERS from the working directory, with the installed command ---------------

INSTALLED = Path(sys.executable).with_name("workstream")  # the console script of this venv

MYAPP_JOBS = """
from workstream import handler


@handler("myapp_hello")
def hello(payload, job):
    return {"hello": payload.get("name", "world")}
"""


def installed_env(**extra: str) -> dict[str, str]:
    """The environment of a shell in which nobody set PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PORT": "0", "LOG_FORMAT": "json", "LOG_LEVEL": "info", **extra}


def wait_for_start(proc: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, object]:
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            assert proc.poll() is None, "".join(seen)
            continue
        seen.append(line)
        if '"server_started"' in line:
            return json.loads(line)
    raise AssertionError("no server_started line: " + "".join(seen))


@pytest.mark.skipif(not INSTALLED.exists(), reason="no installed workstream command")
def test_job_handlers_in_the_working_directory_load_with_the_installed_command(
    workdir: Path,
) -> None:
    (workdir / "myapp").mkdir()
    (workdir / "myapp" / "__init__.py").write_text("")
    (workdir / "myapp" / "jobs.py").write_text(MYAPP_JOBS)
    proc = subprocess.Popen(
        [str(INSTALLED), "serve"],
        cwd=workdir,
        env=installed_env(JOB_HANDLERS="myapp.jobs"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = wait_for_start(proc)
        assert "myapp_hello" in started["job_types"]  # type: ignore[operator]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.skipif(not INSTALLED.exists(), reason="no installed workstream command")
@pytest.mark.parametrize(
    ("setting", "value", "module"),
    [
        ("JOB_HANDLERS", "nothere.jobs", "nothere.jobs"),
        ("EXTENSIONS", "nothere", "nothere"),
        ("WORKER_MIDDLEWARE", "nothere.mw:wrap", "nothere.mw"),
    ],
)
def test_a_module_that_is_nowhere_says_where_it_was_looked_for(
    workdir: Path, setting: str, value: str, module: str
) -> None:
    done = subprocess.run(
        [str(INSTALLED), "serve"],
        cwd=workdir,
        env=installed_env(**{setting: value}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"workstream: {setting}: cannot import module {module!r}: ")
    assert f"working directory ({workdir})" in line and "PYTHONPATH" in line
