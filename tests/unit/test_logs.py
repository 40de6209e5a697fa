"""Structured logs: job events become records, records become one JSON object a line."""

from __future__ import annotations

import io
import json
import logging
import queue
from typing import Any

import pytest

from workstream.jobs.events import JOB_COMPLETED, JOB_FAILED, JOB_STARTED, JobEvent
from workstream.logs import JsonFormatter, TextFormatter, _LogWriter, log_job_events


def record(message: str = "job_completed", **extra: Any) -> logging.LogRecord:
    return logging.getLogger("workstream.jobs").makeRecord(
        "workstream.jobs", logging.INFO, __file__, 1, message, (), None, extra=extra
    )


def test_a_json_line_has_the_event_and_its_fields() -> None:
    line = JsonFormatter().format(
        record(
            event="job_completed",
            job_id="j1",
            type="echo",
            attempt=2,
            worker="worker-3",
            duration_ms=1.5,
        )
    )
    parsed = json.loads(line)
    assert parsed["event"] == "job_completed" and parsed["level"] == "info"
    assert (parsed["job_id"], parsed["type"], parsed["attempt"]) == ("j1", "echo", 2)
    assert (parsed["worker"], parsed["duration_ms"]) == ("worker-3", 1.5)
    assert "message" not in parsed  # the same as the event: not repeated
    assert "\n" not in line


def test_a_record_without_an_event_is_named_after_its_logger() -> None:
    other = logging.getLogger("waitress").makeRecord(
        "waitress", logging.WARNING, __file__, 1, "something %s", ("odd",), None
    )
    parsed = json.loads(JsonFormatter().format(other))
    assert (parsed["event"], parsed["message"]) == ("waitress", "something odd")


def test_text_format_is_one_line_for_humans() -> None:
    line = TextFormatter().format(record(event="job_completed", job_id="j1", attempt=1))
    assert "job_completed" in line and "job_id=j1" in line and "\n" not in line


def test_job_events_log_at_levels_that_match_their_weight(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = [
        JobEvent(JOB_STARTED, "j", "echo", 1, 0.0, worker="w"),
        JobEvent(JOB_COMPLETED, "j", "echo", 1, 0.0, worker="w", duration_ms=1.0),
        JobEvent(JOB_FAILED, "k", "echo", 1, 0.0, error="boom", final=False),
        JobEvent(JOB_FAILED, "k", "echo", 4, 0.0, error="boom", final=True),
    ]
    with caplog.at_level(logging.DEBUG, logger="workstream.jobs"):
        log_job_events(events)
    levels = [(r.event, r.levelname) for r in caplog.records]  # type: ignore[attr-defined]
    assert levels == [
        ("job_started", "INFO"),
        ("job_completed", "INFO"),
        ("job_failed", "WARNING"),
        ("job_failed", "ERROR"),
    ]


def test_the_writer_writes_every_record_once_and_survives_a_bad_one() -> None:
    class Broken(logging.Formatter):
        def format(self, rec: logging.LogRecord) -> str:
            if rec.getMessage() == "bad":
                raise ValueError("cannot format")
            return rec.getMessage()

    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    out = io.StringIO()
    writer = _LogWriter(records, Broken(), out)
    writer.start()
    for message in ("one", "bad", "two"):
        records.put(record(message))
    writer.stop()  # drains what is queued, then ends
    lines = out.getvalue().splitlines()
    assert lines[0] == "one" and lines[2] == "two"
    assert json.loads(lines[1])["event"] == "log_format_error"
