"""Handlers a real worker process imports in the unit tests (`JOB_HANDLERS`)."""

from __future__ import annotations

import os
import time
from typing import Any

from workstream import handler
from workstream.handlers.middleware import Call, Middleware


@handler("boom")
def boom(payload: Any, job: Any) -> Any:
    raise RuntimeError("boom")


@handler("pid")
def pid(payload: Any, job: Any) -> Any:
    return {"pid": os.getpid(), "attempt": job.attempt}


@handler("spin", timeout=0.5)
def spin(payload: Any, job: Any) -> Any:
    while True:
        pass


@handler("nap")
def nap(payload: Any, job: Any) -> Any:
    time.sleep(float(payload.get("seconds", 0.2)))
    return {"slept": True}


@handler("die")
def die(payload: Any, job: Any) -> Any:
    os._exit(int(payload.get("code", 1)))


@handler("odd_result")
def odd_result(payload: Any, job: Any) -> Any:
    return {"value": object()}


class Tag(Middleware):
    """Counts calls in the child, so a test can see that WORKER_MIDDLEWARE ran there."""

    calls = 0

    def before(self, call: Call) -> None:
        Tag.calls += 1
        call.state["tag"] = Tag.calls

    def after(self, call: Call) -> None:
        if call.ok and isinstance(call.result, dict):
            call.result["tagged"] = call.state["tag"]
