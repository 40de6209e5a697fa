"""JSON responses, serialised here rather than by Falcon's media handlers so that the bytes
on the wire are decided in one place."""

from __future__ import annotations

import json
from typing import Any

import falcon

JSON = "application/json"


def render_json(value: Any) -> bytes:
    """UTF-8 JSON. A handler's result may hold a lone surrogate, which UTF-8 cannot carry;
    such a document is sent with ASCII escapes instead of failing the request."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value).encode("ascii")


def send_json(resp: falcon.Response, value: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = JSON
    resp.data = render_json(value)
