"""`workstream serve` and `workstream migrate` with DATABASE_URL=postgresql://...: a
database that cannot be reached stops start-up with one clear line (no password), and
`migrate` creates the schema once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.serverproc import ServerProcess, run_workstream
from tests.pg import scratch_database
from workstream.store.schema import load_migrations

pytestmark = pytest.mark.postgres


def env_for(workdir: Path, url: str) -> dict[str, str]:
    return {**ServerProcess(workdir).env, "DATABASE_URL": url, "LOG_FORMAT": "text"}


def test_serve_with_an_unreachable_database_exits_1_naming_it_without_the_password(
    workdir: Path,
) -> None:
    url = "postgresql://worker:pa55-secret@127.0.0.1:1/ws_unreachable"
    done = run_workstream(workdir, "serve", env=env_for(workdir, url), timeout=30)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if "cannot start" in line]
    assert len(lines) == 1, done.stderr
    assert "postgresql://worker@127.0.0.1:1/ws_unreachable" in lines[0]
    assert "connection refused" in lines[0]
    assert "pa55-secret" not in done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_creates_the_schema_once_and_serve_then_starts(workdir: Path) -> None:
    with scratch_database("ws_cli") as db:
        # A password in the URL (trust auth ignores it) never reaches the output.
        env = env_for(workdir, db.url.replace("postgres@", "postgres:not-a-secret@", 1))
        first = run_workstream(workdir, "migrate", env=env)
        assert first.returncode == 0, first.stderr
        assert "schema is up to date" in first.stdout
        assert "not-a-secret" not in first.stdout + first.stderr
        assert "postgresql://postgres:***@" in first.stdout  # the user name is kept
        again = run_workstream(workdir, "migrate", env=env)
        assert again.returncode == 0, again.stderr
        versions = [(version,) for version, _, _ in load_migrations("postgres")]
        assert db.execute("SELECT version FROM schema_migrations ORDER BY 1") == versions
        assert db.execute("SELECT count(*) FROM jobs") == [(0,)]

        server = ServerProcess(workdir, env={"DATABASE_URL": db.url}).start()
        try:
            status, _, body = server.request(
                "POST", "/jobs", {"type": "echo", "payload": {"hello": "pg"}}
            )
            assert status == 201, body
            server.wait_for_log("job_completed", job_id=body["id"])
            assert db.execute("SELECT status FROM jobs WHERE id = %s", (body["id"],)) == [
                ("completed",)
            ]
        finally:
            server.stop()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://worker:pa55-secret@127.0.0.1:5432/ws?sslmode=bogus", "sslmode"),
        ("postgresql://worker:pa55-secret@127.0.0.1:notaport/ws", "notaport"),
    ],
)
def test_a_bad_option_in_the_url_is_a_setting_error_exit_2(
    workdir: Path, url: str, named: str
) -> None:
    for command in ("serve", "migrate"):
        done = run_workstream(workdir, command, env=env_for(workdir, url), timeout=30)
        assert done.returncode == 2, (command, done.stderr)
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("workstream: DATABASE_URL: ") and named in line
        assert "pa55-secret" not in done.stderr
