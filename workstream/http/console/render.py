"""Server-side rendering of the console's pages: Jinja2 templates, autoescaped.

Jinja2 rather than `string.Template`: pages have loops, conditions and shared layout, and
Jinja2's autoescaping makes every value HTML-safe unless a template says otherwise (none
does), which is the property that matters most for a page showing user payloads and
error messages. It is compiled on the server: nothing of it reaches the browser.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import jinja2

from workstream.units import format_time

MAX_SHOWN_JSON = 64 * 1024  # characters of a payload or result a page shows


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    text = format_time(timestamp) or ""
    return text[:19].replace("T", " ") + "Z"


def _iso(timestamp: float | None) -> str:
    return format_time(timestamp) or ""


def _ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "—"
    return _duration((now if now is not None else time.time()) - timestamp) + " ago"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 0:
        return "in " + _duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    if len(text) > MAX_SHOWN_JSON:
        return text[:MAX_SHOWN_JSON] + f"\n… ({len(text) - MAX_SHOWN_JSON} more characters)"
    return text


def _count(value: tuple[int, bool] | int | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, tuple):
        number, capped = value
        return f"{number}+" if capped else str(number)
    return str(value)


def _nice_max(value: float) -> int:
    if value <= 5:
        return 5
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return int(10 * magnitude)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("workstream.http.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when, iso=_iso, ago=_ago, duration=_duration, pretty=_pretty, count=_count
    )
    env.globals.update(nice_max=_nice_max)
    return env
