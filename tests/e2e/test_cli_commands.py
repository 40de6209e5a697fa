"""The `workstream` command as a newcomer meets it: real processes, no server needed
unless a test starts one (or the client tests' stub)."""

from __future__ import annotations

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
