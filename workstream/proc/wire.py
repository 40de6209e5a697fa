"""The messages a worker process and its supervisor exchange, as plain dicts in frames.

Down (parent to child): `run` (a slot and a claimed job). Up (child to parent): `ready`
once the handlers are imported, `fatal` when they cannot be, `done` per finished attempt
(the result or the error text, exactly as thread mode would store it) and `rss` (the
child's resident memory) after each batch of outcomes. Closing the socket is the only
"stop": the child exits at EOF.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from workstream.jobs.model import Job, JobStatus

RUN, READY, FATAL, DONE, RSS = "run", "ready", "fatal", "done", "rss"

_JOB_FIELDS = tuple(item.name for item in dataclasses.fields(Job))


def job_to_wire(job: Job) -> dict[str, Any]:
    out = {name: getattr(job, name) for name in _JOB_FIELDS}
    out["status"] = job.status.value
    return out


def job_from_wire(data: dict[str, Any]) -> Job:
    values: dict[str, Any] = {name: data.get(name) for name in _JOB_FIELDS if name in data}
    values["status"] = JobStatus(data["status"])
    return Job(**values)


def run(slot: int, job: Job) -> dict[str, Any]:
    return {"op": RUN, "slot": slot, "job": job_to_wire(job)}


def ready(pid: int, threads: int) -> dict[str, Any]:
    return {"op": READY, "pid": pid, "threads": threads}


def fatal(error: str) -> dict[str, Any]:
    return {"op": FATAL, "error": error}


def rss(nbytes: int | None) -> dict[str, Any]:
    return {"op": RSS, "rss": nbytes}


@dataclass(frozen=True, slots=True)
class Done:
    """One finished attempt, as the child reports it."""

    slot: int
    job_id: str
    attempt: int
    duration: float
    result: Any = None
    error: str | None = None
    error_class: str | None = None
    traceback: str | None = None  # bounded by the child (attempts.clip_traceback)

    def to_wire(self) -> dict[str, Any]:
        out = {
            "op": DONE,
            "slot": self.slot,
            "id": self.job_id,
            "attempt": self.attempt,
            "duration": self.duration,
            "result": self.result,
            "error": self.error,
        }
        if self.error is not None:
            out["error_class"] = self.error_class
            out["traceback"] = self.traceback
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Done:
        return cls(
            slot=int(data["slot"]),
            job_id=str(data["id"]),
            attempt=int(data["attempt"]),
            duration=float(data["duration"]),
            result=data.get("result"),
            error=data.get("error"),
            error_class=_text(data.get("error_class")),
            traceback=_text(data.get("traceback")),
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
