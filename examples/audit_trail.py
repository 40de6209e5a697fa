"""A worked example of adding an actor type: an audit trail of job transitions.

It subscribes to job events on the engine's EventBus; the Registry does not know it
exists. See docs/architecture.md ("Adding an actor type"); tests/integration runs it.

    trail = AuditTrail.start(path=Path("data/audit.jsonl"))
    engine.events.subscribe_actor(trail, kinds=AuditTrail.KINDS)   # before engine.start()
    engine.start()
    ...
    engine.stop()
    trail.stop()                                                   # after the engine
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import pykka

from workstream.actors.events import JobEvents
from workstream.jobs import events


class AuditTrail(pykka.ThreadingActor):
    """Appends one JSON line per state change: who, what, when."""

    KINDS = (
        events.JOB_CREATED,
        events.JOB_COMPLETED,
        events.JOB_FAILED,
        events.JOB_RETRIED,
        events.JOB_RECOVERED,
        events.JOB_RELEASED,
        events.JOB_CANCELLED,
    )

    def __init__(self, *, path: Path) -> None:
        super().__init__()
        self._path = path
        self._file: IO[str] | None = None
        self.written = 0

    def on_start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._path.open("a", encoding="utf-8")

    def on_stop(self) -> None:
        if self._file is not None:
            self._file.close()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, JobEvents):
            assert self._file is not None
            for event in message.events:
                self._file.write(json.dumps({**event.fields(), "at": event.at}) + "\n")
                self.written += 1
            self._file.flush()
        return None

    def count(self) -> int:
        """How many lines were written (call through the proxy: a barrier too)."""
        return self.written
