"""An extension whose setup starts an actor and then raises: start-up must still end with
exit 2 (the actor the failed setup started must not keep the process alive)."""

from __future__ import annotations

from typing import Any

import pykka

from workstream import ExtensionContext


class Orphan(pykka.ThreadingActor):
    pass


def setup(context: ExtensionContext) -> list[Any]:
    Orphan.start()
    raise RuntimeError("setup failed after starting an actor")
