"""Shared test helpers: a settable clock, job builders, and a recording actor."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from workstream.jobs.model import Job, JobStatus

T0 = 1_800_000_000.0  # a fixed "now" for deterministic tests


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.now += seconds
            return self.now


def make_job(
    job_id: str = "job-1",
    *,
    status: JobStatus = JobStatus.PENDING,
    now: float = T0,
    job_type: str = "echo",
    **changes: Any,
) -> Job:
    base = Job(
        id=job_id,
        type=job_type,
        payload={"n": 1},
        status=status,
        max_retries=3,
        created_at=now,
        updated_at=now,
        run_at=now,
    )
    return base.replace(**changes)


@dataclass(frozen=True)
class _Messages:
    reply: pykka.ThreadingFuture[Any]


class Recorder(pykka.ThreadingActor):
    """A stand-in actor that records every message it is told and may answer it.

    `respond(message)` runs in the actor's thread for each recorded message. Reading
    `messages(ref)` is an ask, so it is a barrier for every earlier tell to this actor.
    """

    def __init__(self, respond: Callable[[Any], None] | None = None) -> None:
        super().__init__()
        self._seen: list[Any] = []
        self._respond = respond

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Messages):
            message.reply.set(list(self._seen))
            return None
        self._seen.append(message)
        if self._respond is not None:
            self._respond(message)
        return None


def messages(ref: pykka.ActorRef[Any], timeout: float = 2.0) -> list[Any]:
    future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    ref.tell(_Messages(future))
    return future.get(timeout=timeout)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll a condition on something outside this process (a real server, a database
    notification: there is no event to wait on) with a deadline; returns the predicate's
    truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
