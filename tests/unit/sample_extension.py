"""An extension module for tests/unit/test_extensions.py: reads two settings, starts one
actor, serves one route."""

from __future__ import annotations

from typing import Any

import pykka

from workstream import ExtensionContext, Setting
from workstream.converters import positive_int

ROWS = (Setting("limit", 5, positive_int, "a number"), Setting("label", "x", str, "a label"))


class Counter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        self.count += 1
        return self.count


class Hello:
    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"hello": True}


def setup(context: ExtensionContext) -> list[pykka.ActorRef[Any]]:
    context.values = context.settings(*ROWS)  # type: ignore[attr-defined]
    context.add_route("/hello", Hello())
    return [Counter.start()]
