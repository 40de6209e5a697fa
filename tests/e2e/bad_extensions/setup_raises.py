"""An extension whose setup raises before it starts anything (EXTENSIONS must exit 2)."""

from __future__ import annotations

from typing import Any

from workstream import ExtensionContext


def setup(context: ExtensionContext) -> list[Any]:
    raise RuntimeError("setup refused to run")
