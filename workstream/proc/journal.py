"""The log lines a supervisor writes about its worker process: each has an `event`, the
Worker's name and the child's pid, so `worker_process_started` / `worker_process_exited`
and the rest can be followed per child in the JSON log."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("workstream.actors.process_worker")


def note(level: int, event: str, message: str, worker: str, pid: int | None, **fields: Any) -> None:
    log.log(level, message, extra={"event": event, "worker": worker, "pid": pid, **fields})


def started(worker: str, pid: int | None, threads: int | None) -> None:
    note(
        logging.INFO,
        "worker_process_started",
        "worker process started",
        worker,
        pid,
        threads=threads,
    )


def exited(worker: str, pid: int | None, cause: str, **fields: Any) -> None:
    level = logging.INFO if cause in ("recycled", "shutdown") else logging.WARNING
    note(
        level, "worker_process_exited", "worker process exited", worker, pid, cause=cause, **fields
    )


def backoff(worker: str, delay: float, quick_deaths: int, crash_loop: bool) -> None:
    event = "worker_process_crash_loop" if crash_loop else "worker_process_backoff"
    note(
        logging.WARNING,
        event,
        f"worker process died at start; next one in {delay:g}s",
        worker,
        None,
        quick_deaths=quick_deaths,
        delay_seconds=delay,
    )


def recovered(worker: str, pid: int | None, quick_deaths: int) -> None:
    note(
        logging.INFO,
        "worker_process_recovered",
        "worker process lives again: the crash loop is over",
        worker,
        pid,
        quick_deaths=quick_deaths,
    )
