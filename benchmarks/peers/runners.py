"""How each peer is installed, reset, fed and started: the way its users run it, with
its workers as separate processes started by its own command."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import BIN, NotRun
from benchmarks.peers import REDIS_URL, SESSION

PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = f"bench_procrastinate_{SESSION}"
PG_DSN = os.environ.get("BENCH_PG_DSN", f"postgresql://postgres@127.0.0.1:5432/{PG_DB}")


def _require(*modules: str) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise NotRun(f"not installed ({name}: pip install -e '.[bench]')") from exc


def _redis() -> Any:
    _require("redis")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        raise NotRun(f"Redis unreachable at {REDIS_URL} ({type(exc).__name__})") from None
    return client


def _command(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise NotRun(f"command {name!r} not found")
    return found


class Peer:
    key = ""
    label = ""
    sender_threads = 4

    def check(self, session: Path) -> None:
        """Raise NotRun with the reason if this peer cannot run here."""

    def reset(self) -> None:
        """Empty its queue and any state left by an earlier run."""

    def enqueue_many(self, count: int) -> None:
        raise NotImplementedError

    def sender(self) -> Callable[[float], None]:
        """A function that enqueues one no-op carrying the client's send time."""
        raise NotImplementedError

    def worker_command(self) -> list[str]:
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {}


class _RedisPeer(Peer):
    modules: tuple[str, ...] = ()

    def check(self, session: Path) -> None:
        _require(*self.modules)
        self._redis = _redis()

    def reset(self) -> None:
        for key in self._redis.scan_iter(match=f"*{SESSION}*", count=1000):
            self._redis.delete(key)


class Dramatiq(_RedisPeer):
    modules = ("dramatiq", "redis")

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.key = f"dramatiq-p{processes}"
        self.label = f"Dramatiq (Redis, {processes} proc x 8 threads)"

    def check(self, session: Path) -> None:
        super().check(session)
        self._cmd = _command("dramatiq")
        from benchmarks.peers import dramatiq_tasks

        self._tasks = dramatiq_tasks

    def enqueue_many(self, count: int) -> None:
        send = self._tasks.noop.send
        for _ in range(count):
            send(0.0)

    def sender(self) -> Callable[[float], None]:
        return self._tasks.noop.send

    def worker_command(self) -> list[str]:
        return [self._cmd, "benchmarks.peers.dramatiq_tasks", "-p", str(self.processes), "-t", "8"]


class Huey(Peer):
    def __init__(self, storage: str) -> None:
        self.storage = storage
        self.key = f"huey-{storage}"
        self.label = f"Huey ({'Redis' if storage == 'redis' else 'SQLite'}, 8 threads)"

    def check(self, session: Path) -> None:
        _require("huey")
        if self.storage == "redis":
            self._redis = _redis()
        else:
            self._path = session / "huey.db"
            os.environ["BENCH_HUEY_SQLITE"] = str(self._path)
        self._cmd = _command("huey_consumer")
        module = "huey_redis" if self.storage == "redis" else "huey_sqlite"
        self._tasks = importlib.import_module(f"benchmarks.peers.{module}")

    def reset(self) -> None:
        self._tasks.huey.flush()

    def enqueue_many(self, count: int) -> None:
        noop = self._tasks.noop
        for _ in range(count):
            noop(0.0)

    def sender(self) -> Callable[[float], None]:
        return self._tasks.noop

    def worker_command(self) -> list[str]:
        module = "huey_redis" if self.storage == "redis" else "huey_sqlite"
        return [self._cmd, f"benchmarks.peers.{module}.huey", "-w", "8", "-k", "thread"]

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_HUEY_SQLITE": str(getattr(self, "_path", ""))}


class Celery(_RedisPeer):
    key = "celery"
    label = "Celery (Redis, prefork x CPUs)"
    modules = ("celery", "redis")

    def check(self, session: Path) -> None:
        super().check(session)
        self._cmd = _command("celery")
        from benchmarks.peers import celery_app

        self._tasks = celery_app

    def enqueue_many(self, count: int) -> None:
        delay = self._tasks.noop.delay
        for _ in range(count):
            delay(0.0)

    def sender(self) -> Callable[[float], None]:
        return self._tasks.noop.delay

    def worker_command(self) -> list[str]:
        return [self._cmd, "-A", "benchmarks.peers.celery_app", "worker", "--loglevel=WARNING"]


class Rq(_RedisPeer):
    key = "rq"
    label = "RQ (Redis, SimpleWorker)"
    modules = ("rq", "redis")

    def check(self, session: Path) -> None:
        super().check(session)
        self._cmd = _command("rq")
        from rq import Queue

        self._queue = Queue(f"bench-rq-{SESSION}", connection=self._redis)

    def enqueue_many(self, count: int) -> None:
        from rq import Queue

        from benchmarks.peers.rq_tasks import noop

        for start in range(0, count, 1000):
            self._queue.enqueue_many(
                [
                    Queue.prepare_data(noop, kwargs={"t0": 0.0})
                    for _ in range(start, min(count, start + 1000))
                ]
            )

    def sender(self) -> Callable[[float], None]:
        from benchmarks.peers.rq_tasks import noop

        queue = self._queue
        return lambda t0: queue.enqueue(noop, t0=t0)

    def worker_command(self) -> list[str]:
        return [
            self._cmd, "worker", "--worker-class", "rq.worker.SimpleWorker",
            "--url", REDIS_URL, f"bench-rq-{SESSION}",
        ]  # fmt: skip


class Procrastinate(Peer):
    key = "procrastinate"
    label = "procrastinate (PostgreSQL, concurrency 8)"
    sender_threads = 1

    def check(self, session: Path) -> None:
        _require("procrastinate", "psycopg")
        import psycopg

        try:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
                conn.execute(f"CREATE DATABASE {PG_DB}")
        except Exception as exc:
            raise NotRun(f"PostgreSQL unreachable or refused ({type(exc).__name__})") from None
        self._cmd = _command("procrastinate")
        from benchmarks.peers import procrastinate_app

        self._app = procrastinate_app.app
        self._tasks = procrastinate_app
        with self._app.open():
            self._app.schema_manager.apply_schema()

    def reset(self) -> None:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")

    def enqueue_many(self, count: int) -> None:
        with self._app.open():
            for start in range(0, count, 1000):
                self._tasks.noop.batch_defer(
                    *({"t0": 0.0} for _ in range(start, min(count, start + 1000)))
                )

    def sender(self) -> Callable[[float], None]:
        app, noop = self._app, self._tasks.noop
        app.open()
        return lambda t0: noop.defer(t0=t0)

    def worker_command(self) -> list[str]:
        return [
            self._cmd, "--app=benchmarks.peers.procrastinate_app.app", "worker",
            "--concurrency", "8",
        ]  # fmt: skip

    def drop(self) -> None:
        import psycopg

        with contextlib.suppress(Exception):
            self._app.close()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def all_peers() -> list[Peer]:
    return [
        Dramatiq(1),
        Dramatiq(2),
        Huey("redis"),
        Huey("sqlite"),
        Celery(),
        Rq(),
        Procrastinate(),
    ]
