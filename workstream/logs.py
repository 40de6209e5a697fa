"""Structured logs: job events as log records, and the formatters the CLI installs.

The library only emits records (through `logging`); `configure_logging` is called by the
CLI alone. Under LOG_FORMAT=json every line on stderr, waitress's included, is one JSON
object with `ts`, `level`, `logger`, `event`, `message` and the event's fields (`job_id`,
`type`, `attempt`, `worker`, `duration_ms`, ...). A queue handler moves formatting and
writing off the threads that log (the Registry and the Workers).
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from workstream.jobs.events import JOB_FAILED, JOB_FENCED, JOB_REJECTED, JobEvent

job_log = logging.getLogger("workstream.jobs")

# Attributes every LogRecord has; anything else was passed in `extra`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def log_job_events(events: Sequence[JobEvent]) -> None:
    """An EventBus listener: one log record per job event."""
    for event in events:
        if event.kind == JOB_REJECTED:
            level = logging.DEBUG
            fields = {"event": event.kind, "type": event.type, "count": event.count}
        else:
            level = _level(event)
            fields = event.fields()
        if job_log.isEnabledFor(level):
            job_log.log(level, event.kind, extra=fields)


def _level(event: JobEvent) -> int:
    if event.kind == JOB_FAILED:
        return logging.ERROR if event.final else logging.WARNING
    if event.kind == JOB_FENCED:
        return logging.WARNING
    return logging.INFO


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record. It formats two lines per job (started, completed), so
    the time stamp's date and time are made once per second and the encoder is reused."""

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")  # (a second, its "YYYY-MM-DDTHH:MM:SS")
        self._encoder = json.JSONEncoder(default=str, ensure_ascii=False)

    def _ts(self, created: float) -> str:
        moment = datetime.fromtimestamp(created, UTC)  # rounds to microseconds, as before
        second, stamp = self._second
        if second != int(created) or moment.microsecond == 0:
            full = moment.isoformat(timespec="milliseconds")
            if moment.microsecond != 0:
                self._second = (int(created), full[:19])
            return full
        return f"{stamp}.{moment.microsecond // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        extras = _extras(record)
        line["event"] = extras.pop("event", None) or _default_event(record)
        message = record.getMessage()
        if message != line["event"]:
            line["message"] = message
        line.update(extras)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return self._encoder.encode(line)


def _default_event(record: logging.LogRecord) -> str:
    return "log" if record.name.startswith("workstream") else record.name.split(".")[0]


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        extras = _extras(record)
        event = extras.pop("event", None)
        message = record.getMessage()
        head = f"{stamp} {record.levelname:<7} {event or message}"
        if event and message != event:
            head += f" - {message}"
        tail = " ".join(f"{key}={value}" for key, value in extras.items())
        text = f"{head} {tail}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Send every log record (ours, waitress's, pykka's) to stderr in one format."""
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    writer = _LogWriter(records, formatter, stream or sys.stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_PreparedQueueHandler(records))
    root.setLevel(level.upper())
    # pykka logs every exception an ask returns at info; they are answered, not lost.
    logging.getLogger("pykka").setLevel(max(logging.WARNING, root.level))
    # waitress warns "Task queue depth is N" on every request that waits for a thread:
    # under overload that is thousands of lines a second saying one thing.
    logging.getLogger("waitress.queue").setLevel(max(logging.ERROR, root.level))
    _log_uncaught_exceptions()
    # The formats show none of these; gathering them costs the logging threads time.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the documented way to skip the caller lookup (a stack walk)
    writer.start()
    atexit.register(writer.stop)


class _LogWriter:
    """Formats and writes log records on a thread of its own, every record waiting at that
    moment in one write: the threads that log (the Registry, the Workers) only enqueue, and
    a busy server makes one system call per batch of lines, not one per line."""

    BATCH = 1000

    def __init__(
        self,
        records: queue.SimpleQueue[logging.LogRecord | None],
        formatter: logging.Formatter,
        stream: TextIO,
    ) -> None:
        self._records = records
        self._formatter = formatter
        self._stream = stream
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._records.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            batch = [self._records.get()]
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._records.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            lines = [self._format(record) for record in batch if record is not None]
            if lines:
                try:
                    self._stream.write("\n".join(lines) + "\n")
                    self._stream.flush()
                except (OSError, ValueError):
                    pass  # stderr is gone (closed pipe): nothing else to tell it to
            if stop:
                return

    def _format(self, record: logging.LogRecord) -> str:
        try:
            return self._formatter.format(record)
        except Exception as exc:  # a record that cannot be formatted still leaves a trace
            return json.dumps({"event": "log_format_error", "error": repr(exc)})


def _log_uncaught_exceptions() -> None:
    """Tracebacks that nothing caught become log records too, so stderr stays one JSON
    object per line."""
    crash_log = logging.getLogger("workstream.crash")

    def on_thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        crash_log.error(
            "uncaught exception in thread %s",
            args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
            extra={"event": "uncaught_exception"},
        )

    def on_exception(exc_type: Any, exc_value: Any, traceback: Any) -> None:
        crash_log.critical(
            "uncaught exception",
            exc_info=(exc_type, exc_value, traceback),
            extra={"event": "uncaught_exception"},
        )

    threading.excepthook = on_thread_exception
    sys.excepthook = on_exception


class _PreparedQueueHandler(logging.handlers.QueueHandler):
    """Keep `extra` fields and exc_info intact for the formatter on the other side."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = record.getMessage()
        record.args = None
        return record
