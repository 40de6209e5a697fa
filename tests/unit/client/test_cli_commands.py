"""The `workstream` client commands against the stub server: what they print, and how
they end when the reader of their output goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.client.conftest import Stub
from workstream import cli

REPO = Path(__file__).resolve().parents[3]


def closed_pipe() -> int:
    """The write end of a pipe whose reader is gone: every write fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    return write


def run_cli(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workstream", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("args", [["jobs"], ["jobs", "--json"], ["--help"]])
def test_a_reader_gone_away_ends_the_command_quietly(stub: Stub, args: list[str]) -> None:
    for n in range(30):
        stub.add_job(payload={"n": n})
    write = closed_pipe()
    try:
        url = [] if args == ["--help"] else ["--url", stub.url]
        done = run_cli(*args, *url, stdout=write)
    finally:
        os.close(write)
    assert done.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored"
    # Not all was written: status 1 (argparse's help ignores write errors itself: 0).
    assert done.returncode == (0 if args == ["--help"] else 1)


def test_in_process_a_broken_pipe_is_status_1_and_silent(
    stub: Stub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.add_job()
    with open(closed_pipe(), "w") as broken:
        monkeypatch.setattr(sys, "stdout", broken)
        assert cli.main(["jobs", "--url", stub.url]) == 1
        monkeypatch.undo()
    assert capsys.readouterr().err == ""


def test_jobs_prints_the_table_when_the_reader_stays(stub: Stub) -> None:
    job = stub.add_job()
    done = run_cli("jobs", "--url", stub.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("ID ")
    assert job["id"] in done.stdout
