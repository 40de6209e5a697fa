"""Real actors over real storage, in this process: every test that takes `start_engine`
runs once on a SQLite file and once on a PostgreSQL database of its own (one database for
the run, emptied before each test)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import ScratchDatabase, scratch_database
from workstream.config import Settings
from workstream.handlers import HandlerTable
from workstream.handlers.builtin import HANDLERS
from workstream.jobs.events import JobEvent
from workstream.store.base import Store
from workstream.store.postgres import PostgresStore
from workstream.store.sqlite import SqliteStore
from workstream.system import System

FAST = Settings(
    sweeper_interval=0.05,
    retry_backoff=0.0,
    job_queue_capacity=10_000,
    shutdown_timeout=5.0,
    worker_count=4,
    worker_processes=0,  # handlers defined in test modules: a child could not import them
)


class Watcher:
    """An event listener that lets a test wait for a condition on what has happened."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self._cond = threading.Condition()

    def __call__(self, events: Any) -> None:
        with self._cond:
            self.events.extend(events)
            self._cond.notify_all()

    def count(self, kind: str, **match: Any) -> int:
        with self._cond:
            return sum(
                1
                for event in self.events
                if event.kind == kind and all(getattr(event, k) == v for k, v in match.items())
            )

    def wait_for(self, kind: str, count: int = 1, timeout: float = 30.0, **match: Any) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self._count(kind, match) >= count, timeout)
        assert ok, f"waited {timeout}s for {count} x {kind} {match}; saw {self._summary()}"

    def _count(self, kind: str, match: dict[str, Any]) -> int:
        return sum(
            1
            for event in self.events
            if event.kind == kind and all(getattr(event, k) == v for k, v in match.items())
        )

    def _summary(self) -> dict[str, int]:
        summary: dict[str, int] = {}
        for event in self.events:
            summary[event.kind] = summary.get(event.kind, 0) + 1
        return summary


EngineFactory = Callable[..., tuple[System, Watcher]]
StoreFactory = Callable[[], Store]

STORE_KINDS = ("sqlite", "postgres")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "workstream.db"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[ScratchDatabase]:
    with scratch_database("ws_engine") as db:
        yield db


@pytest.fixture(params=STORE_KINDS)
def new_store(request: pytest.FixtureRequest, db_path: Path) -> StoreFactory:
    """Makes (not opens) a store on this test's database; call it again for another
    handle on the same data, e.g. to read what a stopped engine left."""
    if request.param == "sqlite":
        return lambda: SqliteStore(db_path)
    db: ScratchDatabase = request.getfixturevalue("pg_database")
    db.reset()
    return lambda: PostgresStore(db.url)


def engine_factory(new_store: StoreFactory) -> tuple[EngineFactory, list[System]]:
    engines: list[System] = []

    def start(handlers: Any = (), **settings: Any) -> tuple[System, Watcher]:
        table = HandlerTable([*HANDLERS, *handlers])
        engine = System(
            FAST.replace(**settings), store=new_store(), handlers=table, serve_http=False
        )
        watcher = Watcher()
        engine.events.subscribe(watcher)
        engine.start()
        engines.append(engine)
        return engine, watcher

    return start, engines


@pytest.fixture
def start_engine(new_store: StoreFactory) -> Iterator[EngineFactory]:
    """start_engine(handlers=[...], **settings) -> (engine, watcher), on each store kind;
    stopped at teardown."""
    start, engines = engine_factory(new_store)
    yield start
    for engine in engines:
        engine.stop()


@pytest.fixture
def start_sqlite_engine(db_path: Path) -> Iterator[EngineFactory]:
    """start_engine on SQLite only, for what only SQLite does (its lock file)."""
    start, engines = engine_factory(lambda: SqliteStore(db_path))
    yield start
    for engine in engines:
        engine.stop()
