"""The composition root with extensions, in this process: started after the core, served
under /ext/<name>, stopped before the core; a failing setup leaves nothing running."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import FAST
from workstream.errors import ConfigError
from workstream.handlers import HandlerTable
from workstream.handlers.builtin import HANDLERS
from workstream.jobs.spec import JobSpec
from workstream.store.sqlite import SqliteStore
from workstream.system import System

SAMPLE = "tests.unit.sample_extension"


def make_system(db: Path, **settings: Any) -> System:
    return System(
        FAST.replace(port=0, **settings),
        store=SqliteStore(db),
        handlers=HandlerTable(HANDLERS),
    )


def test_an_extension_runs_beside_the_core_and_serves_its_route(tmp_path: Path) -> None:
    system = make_system(tmp_path / "w.db", extensions=(SAMPLE,))
    port = system.start()
    try:
        [extension] = system.extensions
        [counter] = extension.actors
        assert counter.ask("ping", timeout=2) == 1
        url = f"http://127.0.0.1:{port}/ext/sample_extension/hello"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.load(response) == {"hello": True}
        [job] = system.jobs.submit([JobSpec("echo", {"n": 1})]).jobs
        assert system.jobs.get(job.id).type == "echo"
    finally:
        system.stop()
    assert not counter.is_alive()
    assert system.actors.registry is not None and not system.actors.registry.is_alive()


def test_a_setup_that_fails_stops_start_up_and_releases_everything(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    config = tmp_path / "ws.toml"
    config.write_text("[sample_extension]\nlimit = 0\n", encoding="utf-8")
    from workstream.config import load_settings

    settings = load_settings(env={}, config_file=config)
    system = System(
        FAST.replace(
            port=0,
            extensions=(SAMPLE,),
            config_tables=settings.config_tables,
            config_path=settings.config_path,
        ),
        store=SqliteStore(db),
        handlers=HandlerTable(HANDLERS),
    )
    with pytest.raises(ConfigError, match="SAMPLE_EXTENSION_LIMIT"):
        system.start()
    assert system.http is None
    assert system.actors.registry is not None and not system.actors.registry.is_alive()
    # The database lock was released: another server can open the same file at once.
    again = make_system(db)
    again.start()
    again.stop()
