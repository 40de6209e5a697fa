"""Worked example: a new actor type added as an extension, an audit trail of job transitions.

    EXTENSIONS=examples.audit_trail workstream serve

One JSON line per state change (who, what, when) is appended to `path`: the `[audit_trail]`
table of the config file, or AUDIT_TRAIL_PATH, default `data/audit.jsonl` (relative to the
working directory). The actor subscribes to committed job events through the extension
context; no WorkStream file knows it exists. See docs/architecture.md, "Extending WorkStream".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pykka

from workstream import ExtensionContext, JobEvents, Setting, events


def _path(raw: Any) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("expected a file path")
    return Path(raw.strip())


SETTINGS = (Setting("path", Path("data/audit.jsonl"), _path, "the JSON lines file"),)


def setup(context: ExtensionContext) -> list[pykka.ActorRef[Any]]:
    # Settings first and the file opened before the actor's thread starts: a bad value or
    # an unwritable path stops start-up (exit 2) with nothing left running.
    path = context.settings(*SETTINGS)["path"]
    trail = AuditTrail.start(path=path)
    context.subscribe(trail, AuditTrail.KINDS)
    context.log.info(
        "audit trail at %s", path, extra={"event": "audit_trail_opened", "path": str(path)}
    )
    return [trail]


class AuditTrail(pykka.ThreadingActor):
    """Appends one JSON line per state change and flushes after every batch."""

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
        # __init__ runs in the caller's thread (inside setup), so an OSError here fails
        # the setup instead of a thread that has already started.
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self.written = 0

    def on_stop(self) -> None:
        self._file.close()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, JobEvents):
            for event in message.events:
                self._file.write(json.dumps({**event.fields(), "at": event.at}) + "\n")
                self.written += 1
            self._file.flush()
        return None

    def count(self) -> int:
        """How many lines were written (call through the proxy: a barrier too)."""
        return self.written
