"""The worked example from docs/architecture.md: a new actor type, no Registry change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from examples.audit_trail import AuditTrail
from tests.integration.conftest import FAST, Watcher
from workstream.handlers import Handler, HandlerTable
from workstream.handlers.builtin import HANDLERS
from workstream.jobs.events import JOB_COMPLETED, JOB_FAILED
from workstream.jobs.spec import JobSpec
from workstream.store.sqlite import SqliteStore
from workstream.system import System


def test_the_audit_trail_records_every_transition(tmp_path: Path) -> None:
    def fails(payload: Any, job: Any) -> None:
        raise ValueError("nope")

    trail_path = tmp_path / "audit.jsonl"
    trail = AuditTrail.start(path=trail_path)
    engine = System(
        FAST.replace(max_retries=1),
        store=SqliteStore(tmp_path / "w.db"),
        handlers=HandlerTable([*HANDLERS, Handler("fails", fails)]),
        serve_http=False,
    )
    watcher = Watcher()
    engine.events.subscribe(watcher)
    engine.events.subscribe_actor(trail, kinds=AuditTrail.KINDS)
    engine.start()
    try:
        [ok] = engine.jobs.submit([JobSpec("echo", {"hi": 1})]).jobs
        [bad] = engine.jobs.submit([JobSpec("fails")]).jobs
        watcher.wait_for(JOB_COMPLETED)
        watcher.wait_for(JOB_FAILED, final=True)
    finally:
        engine.stop()
    written = trail.proxy().count().get(timeout=5)  # a barrier: every event is written
    trail.stop()
    lines = [json.loads(line) for line in trail_path.read_text().splitlines()]
    assert len(lines) == written
    by_job: dict[str, list[str]] = {}
    for line in lines:
        by_job.setdefault(line["job_id"], []).append(line["event"])
    assert by_job[ok.id] == ["job_created", "job_completed"]
    assert by_job[bad.id] == ["job_created", "job_failed", "job_retried", "job_failed"]
