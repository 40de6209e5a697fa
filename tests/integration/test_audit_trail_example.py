"""The worked example `examples/audit_trail.py`, loaded through EXTENSIONS into a real
System (in this process, no HTTP): a new actor type, no WorkStream file changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pykka
import pytest

from examples.audit_trail import AuditTrail
from tests.integration.conftest import FAST, Watcher
from workstream import ConfigError, JobSpec
from workstream.handlers import Handler, HandlerTable
from workstream.handlers.builtin import HANDLERS
from workstream.jobs.events import JOB_COMPLETED, JOB_FAILED
from workstream.store.sqlite import SqliteStore
from workstream.system import System

AUDIT = ("examples.audit_trail",)


def fails(payload: Any, job: Any) -> None:
    raise ValueError("nope")


def system(tmp_path: Path, **settings: Any) -> System:
    return System(
        FAST.replace(max_retries=1, extensions=AUDIT, **settings),
        store=SqliteStore(tmp_path / "w.db"),
        handlers=HandlerTable([*HANDLERS, Handler("fails", fails)]),
        serve_http=False,
    )


def audit_trails() -> list[pykka.ActorRef[Any]]:
    return pykka.ActorRegistry.get_by_class(AuditTrail)


def test_the_audit_trail_records_every_transition(tmp_path: Path) -> None:
    trail_path = tmp_path / "trail" / "audit.jsonl"
    engine = system(tmp_path, config_tables={"audit_trail": {"path": str(trail_path)}})
    engine.start()
    [extension] = engine.extensions
    [trail] = extension.actors
    # Subscribed after the extension: each batch reaches the trail (a tell) before the
    # watcher, so once the watcher has seen an event the trail has been told it.
    watcher = Watcher()
    engine.events.subscribe(watcher)
    try:
        [ok] = engine.jobs.submit([JobSpec("echo", {"hi": 1})]).jobs
        [bad] = engine.jobs.submit([JobSpec("fails")]).jobs
        watcher.wait_for(JOB_COMPLETED)
        watcher.wait_for(JOB_FAILED, final=True)
        written = trail.proxy().count().get(timeout=5)  # a barrier: every event is written
    finally:
        engine.stop()
    assert not trail.is_alive()  # the System stopped the extension's actor
    lines = [json.loads(line) for line in trail_path.read_text().splitlines()]
    assert len(lines) == written
    by_job: dict[str, list[str]] = {}
    for line in lines:
        by_job.setdefault(line["job_id"], []).append(line["event"])
    assert by_job[ok.id] == ["job_created", "job_completed"]
    assert by_job[bad.id] == ["job_created", "job_failed", "job_retried", "job_failed"]


def test_the_environment_overrides_the_config_table(tmp_path: Path) -> None:
    engine = system(
        tmp_path,
        config_tables={"audit_trail": {"path": str(tmp_path / "from-table.jsonl")}},
        environment={"AUDIT_TRAIL_PATH": str(tmp_path / "from-env.jsonl")},
    )
    engine.start()
    engine.stop()
    assert (tmp_path / "from-env.jsonl").exists()
    assert not (tmp_path / "from-table.jsonl").exists()


def test_a_bad_path_setting_stops_start_up_naming_it(tmp_path: Path) -> None:
    engine = system(tmp_path, environment={"AUDIT_TRAIL_PATH": "  "})
    with pytest.raises(ConfigError, match=r"examples\.audit_trail: invalid AUDIT_TRAIL_PATH"):
        engine.start()
    assert audit_trails() == []


def test_an_unwritable_path_fails_the_setup_with_no_actor_left_running(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    engine = system(tmp_path, environment={"AUDIT_TRAIL_PATH": str(tmp_path / "a-file" / "x")})
    with pytest.raises(ConfigError, match=r"examples\.audit_trail\.setup failed"):
        engine.start()
    assert audit_trails() == []


def test_an_unknown_key_in_its_table_is_refused(tmp_path: Path) -> None:
    engine = system(tmp_path, config_tables={"audit_trail": {"pth": "x.jsonl"}})
    with pytest.raises(ConfigError, match=r"unknown setting 'pth' in \[audit_trail\]"):
        engine.start()
