"""Worker middleware: order, isolation of failures, loading from WORKER_MIDDLEWARE."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.support import make_job
from workstream.errors import ConfigError
from workstream.handlers.middleware import Call, Middleware, MiddlewareChain, load_middleware


class Recording(Middleware):
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen

    def before(self, call: Call) -> None:
        self.seen.append(f"before {self.name}")

    def after(self, call: Call) -> None:
        self.seen.append(f"after {self.name} ok={call.ok}")


class Raising(Middleware):
    def before(self, call: Call) -> None:
        raise RuntimeError("before broke")

    def after(self, call: Call) -> None:
        raise RuntimeError("after broke")


def test_before_hooks_run_in_order_and_after_hooks_in_reverse() -> None:
    seen: list[str] = []
    chain = MiddlewareChain([Recording("a", seen), Recording("b", seen)])
    call = Call(make_job(), "worker-1")
    chain.before(call, chain.items)
    call.error = ValueError("boom")
    chain.after(call, chain.items)
    assert seen == ["before a", "before b", "after b ok=False", "after a ok=False"]


def test_a_raising_hook_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []
    chain = MiddlewareChain([Raising(), Recording("a", seen)])
    call = Call(make_job(), "worker-1", result=1)
    with caplog.at_level(logging.ERROR):
        chain.before(call, chain.items)
        chain.after(call, chain.items)
    assert seen == ["before a", "after a ok=True"]
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("middleware_error") == 2
    assert call.result == 1 and call.error is None  # a hook's failure is not the job's


def test_adding_later_is_seen_by_the_next_call_and_objects_without_hooks_are_refused() -> None:
    chain = MiddlewareChain()
    chain.add(Recording("late", []))
    assert len(chain.items) == 1
    with pytest.raises(TypeError):
        chain.add(object())  # type: ignore[arg-type]


# Module-level targets for WORKER_MIDDLEWARE entries.
class TakesNoArguments(Middleware):
    pass


AN_INSTANCE = TakesNoArguments()
NOT_MIDDLEWARE: Any = 42


def test_worker_middleware_entries_load_classes_and_instances() -> None:
    here = __name__
    loaded = load_middleware([f"{here}:TakesNoArguments", f"{here}:AN_INSTANCE"])
    assert isinstance(loaded[0], TakesNoArguments) and loaded[1] is AN_INSTANCE


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("no_such_module_xyz:Thing", "cannot import module 'no_such_module_xyz'"),
        (f"{__name__}:Missing", "has no attribute 'Missing'"),
        (f"{__name__}:NOT_MIDDLEWARE", "has no before(call) and after(call)"),
        ("nocolon", "expected module:attribute"),
    ],
)
def test_a_bad_worker_middleware_entry_is_a_config_error_naming_it(
    entry: str, message: str
) -> None:
    with pytest.raises(ConfigError, match="WORKER_MIDDLEWARE") as caught:
        load_middleware([entry])
    assert message in caught.value.message
