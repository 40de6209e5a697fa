"""WORKER_MIDDLEWARE entries whose hooks raise: the job must still complete."""

from __future__ import annotations

from workstream import Call, Middleware


class RaisesBefore(Middleware):
    def before(self, call: Call) -> None:
        raise RuntimeError("before hook broke")


class RaisesAfter(Middleware):
    def after(self, call: Call) -> None:
        raise RuntimeError("after hook broke")
