"""Inside a worker process: K handler threads and the one writer of outcomes.

Each thread takes a job, runs it through `handlers.invoke` (the same middleware order and
error texts as thread mode) and leaves a `Done` in the outbox. The writer sends everything
in the outbox at that moment as one write, followed by the process's resident memory, so
outcomes go up in batches and the parent can recycle a child that grew too big.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import threading
import time
from typing import Any

from workstream.handlers import HandlerTable
from workstream.handlers.invoke import (
    Timing,
    call_deferral,
    call_error,
    call_error_class,
    call_handler,
    call_traceback,
    invoke,
)
from workstream.handlers.middleware import Call, MiddlewareChain
from workstream.jobs.attempts import UNSTORABLE_RESULT
from workstream.jobs.model import Job
from workstream.proc import wire
from workstream.proc.frames import FrameError, encode

log = logging.getLogger("workstream.proc")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes(pid: int | str = "self") -> int | None:
    """Resident memory of a process (Linux /proc), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class Runner:
    """The handler threads of one worker process and the writer of their outcomes."""

    def __init__(
        self,
        *,
        sock: socket.socket,
        name: str,
        threads: int,
        handlers: HandlerTable,
        middleware: MiddlewareChain,
    ) -> None:
        self._sock = sock
        self._name = name
        self._handlers = handlers
        self._middleware = middleware
        self._timing = Timing(time.monotonic)
        self._jobs: queue.SimpleQueue[tuple[int, Job]] = queue.SimpleQueue()
        self._outbox: list[wire.Done] = []
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, name=f"handler-{index}", daemon=True)
            for index in range(threads)
        ]
        self._writer = threading.Thread(target=self._write, name="outcomes", daemon=True)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._writer.start()

    def submit(self, slot: int, job: Job) -> None:
        self._jobs.put((slot, job))

    def run_one(self, slot: int, job: Job) -> wire.Done:
        """One attempt, as thread mode runs it (its timeout is the parent's business)."""
        call = Call(job, f"{self._name}.{slot}")
        invoke(
            self._middleware,
            (),
            self._timing,
            call,
            lambda current: call_handler(self._handlers, job, current),
        )
        error = call_error(call)
        if error is None:
            return wire.Done(slot, job.id, job.attempts, call.duration, call.result)
        deferral = call_deferral(call)
        failed = wire.Done(slot, job.id, job.attempts, call.duration, None, error)
        if deferral is not None:
            return dataclasses.replace(failed, defer=deferral[0], hold_type=deferral[1])
        return dataclasses.replace(
            failed, error_class=call_error_class(call), traceback=call_traceback(call)
        )

    def _work(self) -> None:
        while True:
            slot, job = self._jobs.get()
            try:
                done = self.run_one(slot, job)
            except BaseException as exc:  # a bug around the call must not lose the job
                log.exception("worker process failed around a handler")
                done = wire.Done(slot, job.id, job.attempts, 0.0, error=f"internal error: {exc!r}")
            with self._cond:
                self._outbox.append(done)
                self._cond.notify()

    def _write(self) -> None:
        while True:
            with self._cond:
                while not self._outbox:
                    self._cond.wait()
                batch, self._outbox = self._outbox, []
            data = b"".join(_frame(done) for done in batch)
            data += encode(wire.rss(resident_bytes()))
            try:
                self._sock.sendall(data)
            except OSError:
                os._exit(0)  # the parent is gone: nobody is left to tell


def _frame(done: wire.Done) -> bytes:
    try:
        return encode(done.to_wire())
    except (FrameError, TypeError, ValueError) as exc:
        error = f"the handler's result cannot be stored: {exc}"
        failed = wire.Done(
            done.slot,
            done.job_id,
            done.attempt,
            done.duration,
            None,
            error,
            error_class=UNSTORABLE_RESULT,
        )
        return encode(failed.to_wire())


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(encode(message))
