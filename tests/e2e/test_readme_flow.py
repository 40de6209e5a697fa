"""The README's curl examples, run as written against a real server."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.e2e.conftest import StartServer
from tests.e2e.serverproc import REPO
from tests.support import wait_until


def readme_curl_commands() -> list[str]:
    """Every curl command in the README's "Try it" section, continuation lines joined."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        joined = block.replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines() if line.startswith("curl ")]
    return commands


def test_the_readme_curl_flow_works_verbatim(start_server: StartServer, workdir: Path) -> None:
    commands = readme_curl_commands()
    assert len(commands) >= 5
    server = start_server()
    outputs = []
    for command in commands:
        runnable = command.replace("localhost:8080", f"localhost:{server.port}")
        done = subprocess.run(
            runnable, shell=True, cwd=workdir, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(json.loads(done.stdout))
    created = outputs[0]
    assert created["status"] == "pending" and created["type"] == "email_send"
    assert outputs[2]["code"] == "unknown_job_type"

    def completed() -> dict | None:
        status, _, job = server.request("GET", f"/jobs/{created['id']}")
        return job if status == 200 and job["status"] == "completed" else None

    job = wait_until(completed, 20, "the email job to complete")
    eml = workdir / "data" / "outbox" / job["result"]["file"]
    assert eml.is_file()
    message = eml.read_bytes()
    assert b"To: ada@example.com\r\n" in message and b"Subject: Hello\r\n" in message
