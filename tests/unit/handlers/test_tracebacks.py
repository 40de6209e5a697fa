"""Tracebacks and error classes for the attempt history, captured where the handler runs
(`handlers.invoke`: thread mode and the worker process alike), bounded in size."""

from __future__ import annotations

from typing import Any

from tests.support import make_job
from workstream.handlers import HandlerTable
from workstream.handlers.invoke import (
    call_error,
    call_error_class,
    call_handler,
    call_traceback,
)
from workstream.handlers.middleware import Call
from workstream.jobs.attempts import (
    MAX_TRACEBACK_BYTES,
    clip_traceback,
    error_class_of,
)
from workstream.proc import wire


def run(table: HandlerTable, job_type: str, payload: Any = None) -> Call:
    job = make_job("j1", job_type=job_type, payload=payload if payload is not None else {})
    call = Call(job, "worker-1")
    call_handler(table, job, call)
    return call


def failing_table() -> HandlerTable:
    table = HandlerTable()

    def inner(depth: int) -> None:
        if depth == 0:
            raise ValueError("deep trouble")
        inner(depth - 1)

    def deep(payload: Any, job: Any) -> None:
        inner(int(payload.get("depth", 3)))

    def chained(payload: Any, job: Any) -> None:
        try:
            {}["missing"]
        except KeyError as exc:
            raise RuntimeError("while handling it") from exc

    def huge(payload: Any, job: Any) -> None:
        raise RuntimeError("x" * 100_000 + " the end")

    def fine(payload: Any, job: Any) -> Any:
        return {"ok": True}

    def exits(payload: Any, job: Any) -> None:
        raise SystemExit(3)

    table.register("deep")(deep)
    table.register("chained")(chained)
    table.register("huge")(huge)
    table.register("fine")(fine)
    table.register("exits")(exits)
    return table


def test_a_failed_call_carries_its_traceback_and_class():
    call = run(failing_table(), "deep", {"depth": 3})

    text = call_traceback(call)
    assert text is not None
    assert text.startswith("Traceback (most recent call last):")
    assert text.count("in inner") == 4  # every frame, down to the raise
    assert text.rstrip().endswith("ValueError: deep trouble")
    assert call_error_class(call) == "ValueError"
    assert call_error(call) == "ValueError: deep trouble"


def test_a_chained_exception_shows_its_cause():
    text = call_traceback(run(failing_table(), "chained")) or ""

    assert "KeyError: 'missing'" in text
    assert "The above exception was the direct cause" in text
    assert text.rstrip().endswith("RuntimeError: while handling it")


def test_a_huge_traceback_is_clipped_keeping_its_start_and_its_end():
    text = call_traceback(run(failing_table(), "huge")) or ""

    assert len(text.encode("utf-8")) <= MAX_TRACEBACK_BYTES
    assert text.startswith("Traceback (most recent call last):")
    assert "bytes of traceback cut" in text
    assert text.rstrip().endswith("the end")


def test_success_a_missing_handler_and_an_unstorable_result_have_no_traceback():
    table = failing_table()
    assert (call_traceback(run(table, "fine")), call_error_class(run(table, "fine"))) == (
        None,
        None,
    )
    missing = run(table, "no_such_type")
    assert call_traceback(missing) is None and call_error_class(missing) == "NoHandler"
    odd = run(table, "fine")
    odd.result = {1, 2}  # not JSON
    assert call_traceback(odd) is None and call_error_class(odd) == "UnstorableResult"


def test_system_exit_is_data_with_a_traceback():
    call = run(failing_table(), "exits")

    assert call_error_class(call) == "SystemExit"
    assert (call_traceback(call) or "").rstrip().endswith("SystemExit: 3")


def test_clipping_counts_utf8_bytes_and_never_splits_a_character():
    text = "\U0001f525" * 10_000  # 4 bytes each: 40,000 bytes

    clipped = clip_traceback(text, limit=1000) or ""

    assert len(clipped.encode("utf-8")) <= 1000
    assert clipped.startswith("\U0001f525") and clipped.endswith("\U0001f525")
    assert "\ufffd" not in clipped
    assert clip_traceback("short") == "short" and clip_traceback(None) is None


def test_an_error_class_is_read_off_an_error_text():
    assert error_class_of("RuntimeError: boom") == "RuntimeError"
    assert error_class_of("requests.exceptions.HTTPError: 502") == "requests.exceptions.HTTPError"
    assert error_class_of("worker process died (killed by signal 9)") is None
    assert error_class_of("the handler's result cannot be stored: bad") is None
    assert error_class_of(None) is None and error_class_of("") is None


def test_the_wire_carries_class_and_traceback_of_failures_only():
    failed = wire.Done(1, "j1", 2, 0.5, None, "ValueError: x", "ValueError", "Traceback...")
    assert wire.Done.from_wire(failed.to_wire()) == failed
    done = wire.Done(1, "j1", 2, 0.5, {"ok": True})
    assert "traceback" not in done.to_wire()
    assert wire.Done.from_wire(done.to_wire()) == done
    odd = {**failed.to_wire(), "traceback": 42, "error_class": ["x"]}  # a confused child
    assert wire.Done.from_wire(odd).traceback is None
    assert wire.Done.from_wire(odd).error_class is None
