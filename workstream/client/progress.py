"""What `workstream submit --wait` says while it waits, and when the job is done.

A failed attempt is told apart by what follows it: `failed, attempt 1, retry in 0.9s` while
runs are left (the job's `run_at` is set), `failed for good after attempt 3` when none are;
both with the attempt's error, on one line.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, TextIO

ERROR_SHOWN = 200  # characters of `last_error` on a status line


def _error(job: dict[str, Any]) -> str:
    text = " ".join(str(job.get("last_error") or "").split())  # one line
    if len(text) > ERROR_SHOWN:
        text = text[: ERROR_SHOWN - 3] + "..."
    return text


def _retry_in(run_at: str, now: float) -> str:
    try:
        seconds = datetime.fromisoformat(run_at).timestamp() - now
    except ValueError:
        return f"retry at {run_at}"
    return f"retry in {max(0.0, seconds):.1f}s"


def describe(job: dict[str, Any], now: float | None = None) -> str:
    """`job 1a2b3c4d <status>, attempt N` and, for a failure, what follows and why."""
    status = job.get("status", "?")
    attempt = job.get("attempts", 0)
    head = f"job {str(job.get('id', '?'))[:8]}"
    if status != "failed":
        return f"{head} {status}, attempt {attempt}"
    error = _error(job)
    reason = f": {error}" if error else ""
    if job.get("run_at"):
        when = _retry_in(job["run_at"], time.time() if now is None else now)
        return f"{head} failed, attempt {attempt}, will be retried ({when}){reason}"
    return f"{head} failed for good after attempt {attempt}{reason}"


class Progress:
    """One status line while waiting: rewritten in place on a terminal, a new line on each
    change of status otherwise (logs stay readable)."""

    SPINNER = "|/-\\"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = ""
        self._ticks = 0

    def update(self, job: dict[str, Any], elapsed: float) -> None:
        text = describe(job)
        # A countdown changes at every poll: a change of status or attempt is what is news.
        key = text.split(" (retry in ", 1)[0]
        if self._tty:
            self._ticks += 1
            spin = self.SPINNER[self._ticks % len(self.SPINNER)]
            self._stream.write(f"\r{spin} {text} ({elapsed:.1f}s)\033[K")
            self._stream.flush()
        elif key != self._last:
            self._stream.write(f"{text} ({elapsed:.1f}s)\n")
            self._stream.flush()
        self._last = key

    def done(self) -> None:
        if self._tty and self._last:
            self._stream.write("\r\033[K")
            self._stream.flush()
