"""Reading request bodies: untrusted bytes in, a plain JSON value out, or a 4xx.

Falcon's media parsing is not used for requests: it answers 500 on deeply nested JSON and
accepts NaN, Infinity and lone surrogates. Here every step has a bound:

1. Content-Type must be `application/json`, optionally `; charset=utf-8` (415 otherwise);
2. a declared Content-Length over the limit is refused before reading (413), and at most
   limit + 1 bytes are read, which also bounds bodies of unknown length (413);
3. the bytes must be strict UTF-8, and valid JSON without NaN, Infinity, numbers that
   overflow to infinity, integers too long to convert cheaply, or a key repeated within
   one object (400 `invalid_json`: parsers disagree on which of two values wins, so a
   proxy or a client library may have checked a different one than the server keeps);
4. the parsed value is walked without recursion: nesting deeper than `MAX_NESTING` and
   strings or keys holding lone surrogates (not encodable as UTF-8, so not storable) are
   refused (400 `invalid_json`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import falcon

from workstream.errors import InvalidJson, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from workstream.jobs.limits import MAX_DOCUMENT_BYTES

MAX_BODY_BYTES = MAX_DOCUMENT_BYTES
MAX_NESTING = 32
# Python refuses to convert longer decimal integers by default (int_max_str_digits); the
# bound is repeated here so that it holds whatever the interpreter's setting, since
# converting a huge integer takes quadratic time.
MAX_INTEGER_DIGITS = 4300

_READ_CHUNK = 64 * 1024
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def has_body(req: falcon.Request) -> bool:
    """Whether the client sent a body. Waitress de-chunks bodies and sets Content-Length, so
    a missing or zero Content-Length means no body."""
    return bool(req.content_length)


def read_json_body(req: falcon.Request, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The request body as a JSON value. Raises UnsupportedMediaType, PayloadTooLarge or
    InvalidJson (an empty body included)."""
    require_json_content_type(req.content_type)
    raw = read_bounded(req, max_bytes)
    if not raw:
        raise InvalidJson("the request body is empty; send a JSON object")
    return parse_json(raw)


def read_no_input(req: falcon.Request, *, max_bytes: int = MAX_BODY_BYTES) -> None:
    """For requests that take no input (cancel, retry): no body at all, whatever its
    Content-Type, or the empty JSON object `{}`, which some clients always send."""
    if not has_body(req):
        return
    if read_json_body(req, max_bytes=max_bytes) != {}:
        raise InvalidRequest("this request takes no fields: send no body or {}")


def require_json_content_type(content_type: str | None) -> None:
    if not _is_json_utf8(content_type):
        raise UnsupportedMediaType(
            "send the request body as Content-Type: application/json (UTF-8)"
        )


def _is_json_utf8(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type, *params = content_type.split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset":
            return False
        if value.strip().strip('"').lower() != "utf-8":
            return False
    return len(params) <= 1


def read_bounded(req: falcon.Request, max_bytes: int) -> bytes:
    """At most `max_bytes` of body, or PayloadTooLarge. Reads max_bytes + 1 at most."""
    declared = req.content_length
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(_too_large_message(max_bytes))
    stream = req.bounded_stream
    chunks: list[bytes] = []
    received = 0
    while received <= max_bytes:
        chunk = stream.read(min(_READ_CHUNK, max_bytes + 1 - received))
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    if received > max_bytes:
        raise PayloadTooLarge(_too_large_message(max_bytes))
    return b"".join(chunks)


def _too_large_message(max_bytes: int) -> str:
    return f"the request body is larger than {max_bytes} bytes"


def parse_json(raw: bytes) -> Any:
    """Strict JSON from bytes; see the module docstring for what is refused."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("the request body is not valid UTF-8") from None
    if text.startswith("\ufeff"):
        raise InvalidJson("the request body starts with a byte order mark; send plain UTF-8")
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise InvalidJson(_too_deep_message()) from None
    except ValueError as exc:  # json.JSONDecodeError and the refusals below
        raise InvalidJson(f"the request body is not valid JSON: {_describe(exc)}") from None
    check_structure(value)
    return value


def _describe(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {_clip(key)!r} appears twice in one object")
            seen.add(key)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {_clip(text)} is out of range")
    return value


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"integers may have at most {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _too_deep_message() -> str:
    return f"the request body is nested deeper than {MAX_NESTING} levels"


def check_structure(value: Any) -> None:
    """Refuse nesting deeper than MAX_NESTING and strings with lone surrogates.

    Iterative on purpose: a recursive walk would itself fail on the documents it guards
    against. The top-level object or array is level 1.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children: Iterable[Any]
        if isinstance(item, str):
            _check_text(item)
            continue
        if isinstance(item, dict):
            children = item.values()
            for key in item:
                _check_text(key)
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_NESTING:
            raise InvalidJson(_too_deep_message())
        for child in children:
            if isinstance(child, str):
                _check_text(child)
            elif isinstance(child, dict | list):
                pending.append((child, depth + 1))


def _check_text(text: str) -> None:
    if _LONE_SURROGATE.search(text):
        raise InvalidJson("the request body holds a lone surrogate (\\ud800-\\udfff escape)")
