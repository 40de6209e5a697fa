"""The scenario harness: a real `workstream serve` on a database named by DATABASE_URL,
the probe's ledger, an RSS sampler, and the figures line each scenario prints.

`Harness(workdir, database_url)` is one scenario's world. SQLite by default (a file in the
scenario's directory); pass a `postgresql://` URL (and `fresh_database` of tests/pg.py) to
run the same scenario on PostgreSQL once its store lands: everything here reads the
database through `ledger.read_jobs`, which speaks both.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.serverproc import ServerProcess
from tests.reliability.checker import Figures, check, finished
from tests.reliability.hygiene import ErrorCollector
from tests.reliability.ledger import read_jobs, read_ledger
from tests.reliability.load import Answer, LoadGenerator

PROBE_MODULE = "tests.reliability.probe"
FIGURES: list[str] = []  # every figures line of the run, printed again at the end


def scale(default: float, env: str) -> float:
    """A size that the long runs override: RELIABILITY_<NAME>=value."""
    return float(os.environ.get(env, default))


class RssSampler:
    """Samples the server's resident set size every `interval` (the pid may change:
    restarts). `samples` holds (monotonic time, MiB)."""

    def __init__(self, pid: Callable[[], int | None], interval: float = 0.2) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self.samples: list[tuple[float, float]] = []
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            pid = self._pid()
            if pid is not None:
                try:
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                    self.samples.append((time.monotonic(), rss))
                except psutil.Error:
                    pass
            self._stop.wait(self._interval)

    @property
    def peak(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)

    def growth(self) -> float:
        """Peak of the last third minus peak of the middle third, in MiB: how much memory
        still grew once the load was established."""
        if len(self.samples) < 6:
            return 0.0
        third = len(self.samples) // 3
        middle = max(mb for _, mb in self.samples[third : 2 * third])
        last = max(mb for _, mb in self.samples[2 * third :])
        return last - middle


class Harness:
    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        collector: ErrorCollector | None = None,
    ) -> None:
        self.workdir = workdir
        self.database_url = database_url or f"sqlite:///{workdir / 'data' / 'jobs.db'}"
        self.ledger_path = workdir / "ledger.jsonl"
        self.collector = collector or ErrorCollector()
        self.env = {
            "DATABASE_URL": self.database_url,
            "JOB_HANDLERS": PROBE_MODULE,
            "PROBE_LEDGER": str(self.ledger_path),
            "LOG_LEVEL": "warning",
            **(env or {}),
        }
        self.servers: list[ServerProcess] = []
        self.server: ServerProcess | None = None
        self._port = free_port()

    # -- the server --------------------------------------------------------------------

    def start(self, wait: bool = True, **env: str) -> ServerProcess:
        """Start a server on this scenario's port (the same across restarts, so clients
        reconnect to it); with `wait`, until `/health` answers."""
        server = ServerProcess(self.workdir, env={**self.env, "PORT": str(self._port), **env})
        server.port = self._port
        self.servers.append(server)
        self.server = server
        server.start(wait=False)
        if wait:
            self.wait_started(server)
        return server

    def wait_started(self, server: ServerProcess, timeout: float = 30.0) -> None:
        """Until the server answers `/health` (logs are at warning by default, so there
        is no `server_started` line to wait for)."""
        deadline = time.monotonic() + timeout
        while True:
            assert server.proc is not None
            if server.proc.poll() is not None:
                raise AssertionError(
                    f"the server exited with {server.proc.returncode}:\n"
                    + "\n".join(server.lines[-30:])
                )
            try:
                with socket.create_connection(("127.0.0.1", self._port), timeout=2) as sock:
                    request = (
                        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                    )
                    sock.sendall(request)
                    if sock.recv(12).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer /health in {timeout}s")
            time.sleep(0.05)

    def port(self) -> int | None:
        server = self.server
        if server is None or server.proc is None or server.proc.poll() is not None:
            return None
        return server.port

    def pid(self) -> int | None:
        server = self.server
        if server is None or server.proc is None or server.proc.poll() is not None:
            return None
        return server.proc.pid

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()

    # -- HTTP helpers ------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any):
        assert self.server is not None
        status, headers, parsed = self.server.request(method, path, body, **kwargs)
        if status >= 400:
            raw = parsed if isinstance(parsed, bytes | str) else _dumps(parsed)
            self.collector.add(f"{method} {path}", status, headers, _bytes(raw))
        return status, headers, parsed

    def submit(self, job_type: str, payload: Any = None, **fields: Any) -> dict[str, Any]:
        status, _, body = self.request(
            "POST", "/jobs", {"type": job_type, "payload": payload or {}, **fields}
        )
        assert status == 201, body
        return body

    def load(self, make_job: Callable[[str], dict[str, Any]], **kwargs: Any) -> LoadGenerator:
        return LoadGenerator(self.port, make_job, collector=self.collector, **kwargs)

    # -- the record --------------------------------------------------------------------

    def jobs(self) -> list[dict[str, Any]]:
        return read_jobs(self.database_url)

    def ledger(self):
        return read_ledger(self.ledger_path)

    def quiescent(self) -> bool:
        """Nothing running, nothing due: every job finished or waiting for a later time."""
        now = time.time()
        for job in self.jobs():
            if job["status"] == "processing":
                return False
            waiting = job["status"] in ("pending", "failed") and job["run_at"] is not None
            if waiting and job["run_at"] <= now:
                return False
        return True

    def wait_quiescent(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.quiescent():
            if time.monotonic() > deadline:
                raise AssertionError(f"not quiescent after {timeout}s")
            time.sleep(0.2)

    def wait_finished(self, timeout: float) -> None:
        """Until every job has finished (completed, cancelled, failed for good)."""
        deadline = time.monotonic() + timeout
        while not all(finished(job) for job in self.jobs()):
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still unfinished after {timeout}s")
            time.sleep(0.2)

    def figures(
        self,
        scenario: str,
        answers: list[Answer],
        *,
        rss: RssSampler | None = None,
        expect_finished: bool = True,
        **extra: Any,
    ) -> Figures:
        fig = check(
            scenario,
            answers,
            self.jobs(),
            self.ledger(),
            expect_finished=expect_finished,
            rss_peak_mb=rss.peak if rss else 0.0,
        )
        fig.extra.update(extra)
        report(fig)
        return fig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def report(fig: Figures) -> None:
    line = fig.line()
    FIGURES.append(line)
    print("\n" + line, flush=True)


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value)


def _bytes(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else str(raw).encode()
