"""Attempt history: one record per run of a job, kept beside the job.

The Registry writes an `Attempt` in the same transaction as the outcome it records
(completed, failed, timed out, the worker process died, interrupted by a crash or a lost
lease, released at shutdown), so that a job and its history never disagree. Tracebacks are
captured where the handler ran and bounded here (`clip_traceback`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workstream.units import format_time, valid_text

# How an attempt ended.
COMPLETED = "completed"
FAILED = "failed"  # the handler raised (or its result could not be stored)
TIMED_OUT = "timed_out"  # past the handler's timeout
CRASHED = "crashed"  # the worker process died while it ran
INTERRUPTED = "interrupted"  # the server stopped, or the lease expired: counted, recovered
RELEASED = "released"  # given back at shutdown, not counted: it runs again as this number
OUTCOMES = (COMPLETED, FAILED, TIMED_OUT, CRASHED, INTERRUPTED, RELEASED)

# Error classes for failures that are not an exception a handler raised.
WORKER_DIED = "WorkerProcessDied"
INTERRUPTED_CLASS = "Interrupted"
INTERNAL_ERROR = "InternalError"
UNSTORABLE_RESULT = "UnstorableResult"

MAX_TRACEBACK_BYTES = 16 * 1024
_HEAD_BYTES = 4 * 1024  # a clipped traceback keeps its start and, mostly, its end
_CLASS_TEXT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,199}")
MAX_CLASS_LENGTH = 200


def clip_traceback(text: str | None, limit: int = MAX_TRACEBACK_BYTES) -> str | None:
    """`text` in at most `limit` UTF-8 bytes: the first few KiB and the last ones (where the
    exception is), with a marker saying how much was cut between them."""
    if text is None:
        return None
    text = valid_text(text)
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    marker = f"\n... [{{}} bytes of traceback cut: it is longer than {limit} bytes] ...\n"
    room = limit - len(marker.format(len(data)).encode("utf-8"))
    head = min(_HEAD_BYTES, room // 4)
    tail = room - head
    cut = len(data) - head - tail
    start = data[:head].decode("utf-8", errors="ignore")
    end = data[len(data) - tail :].decode("utf-8", errors="ignore")
    return start + marker.format(cut) + end


def error_class_of(error: str | None) -> str | None:
    """The class of an error text `Type: message` (as `describe_exception` writes it), for
    an outcome that did not say; None when the text does not start with a class name."""
    if not error:
        return None
    name = error.split(":", 1)[0].strip()
    return name if _CLASS_TEXT.fullmatch(name) else None


def clip_class(name: str | None) -> str | None:
    if name is None:
        return None
    name = valid_text(name)
    return name if len(name) <= MAX_CLASS_LENGTH else name[:MAX_CLASS_LENGTH]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a job. Times are Unix seconds. `node` is the owner id of the process that
    ran it; `worker` the worker (thread mode) or `process.slot` (process mode), and `pid`
    the worker process's id in process mode. `duration` is the handler's run time in
    seconds (None when it never reported: the attempt was interrupted)."""

    job_id: str
    number: int
    outcome: str
    finished_at: float
    started_at: float | None = None
    node: str | None = None
    worker: str | None = None
    pid: int | None = None
    error: str | None = None
    error_class: str | None = None
    traceback: str | None = None
    duration: float | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "outcome": self.outcome,
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
            "duration_ms": None if self.duration is None else round(self.duration * 1000, 3),
            "node": self.node,
            "worker": self.worker,
            "pid": self.pid,
            "error": self.error,
            "error_class": self.error_class,
            "traceback": self.traceback,
        }
