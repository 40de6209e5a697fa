"""`Link` response headers (RFC 8288): how `Client.iter_jobs` finds the next page."""

from __future__ import annotations

import re
from collections.abc import Iterable

_LINK_TARGET = re.compile(r"[\s,]*<([^>]*)>")
_LINK_PARAM = re.compile(
    r"""\s*;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;,"]*))?"""
)


def parse_links(values: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """Parse `Link` header values (RFC 8288) into (URL, params). URLs and quoted values may hold
    commas and semicolons, so this scans rather than splits. A malformed rest is ignored."""
    links = []
    for text in values:
        pos = 0
        while target := _LINK_TARGET.match(text, pos):
            params: dict[str, str] = {}
            pos = target.end()
            while param := _LINK_PARAM.match(text, pos):
                value = param.group(2) or ""
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                params.setdefault(param.group(1).lower(), value)  # RFC 8288: first one counts
                pos = param.end()
            links.append((target.group(1).strip(), params))
    return links


def next_link(values: Iterable[str]) -> str | None:
    """The URL of the first link whose `rel` includes `next`, or None."""
    for url, params in parse_links(values):
        if "next" in params.get("rel", "").lower().split():
            return url
    return None
