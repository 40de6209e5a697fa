"""The query of `GET /jobs`: order, filters, page size, and the opaque cursor.

The query string is parsed here rather than through Falcon's `req.params` so that unknown
and repeated parameters can be refused instead of silently ignored or merged: a typo such
as `?staus=failed` must not quietly list every job.

The cursor wraps the store's position (`JobPage.next_after`: a job's `created_at` and its
submission number, both below 2**63 as 64-bit patterns) as the URL-safe base64, unpadded,
of their 16 bytes big-endian (the time as its IEEE 754 bits): always 22 characters, so
that clients treat it as opaque and a later format can be told apart by its length. Every
string of `CURSOR_PATTERN` decodes to a position and no other string does, so the API
description states exactly which cursors the server accepts.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from urllib.parse import parse_qsl, urlencode

from workstream.errors import InvalidRequest
from workstream.http.errors import InvalidCursor
from workstream.http.idempotency import MAX_KEY_LENGTH
from workstream.http.openapi_patterns import TIME_FILTER_PATTERN
from workstream.jobs.limits import MAX_TYPE_LENGTH
from workstream.jobs.listing import (
    DEFAULT_LIMIT,
    MAX_ERROR_TEXT,
    MAX_ID_PREFIX,
    MAX_LIMIT,
    MIN_ERROR_TEXT,
    ORDERS,
    JobFilter,
    Order,
    Position,
)
from workstream.jobs.model import JobStatus
from workstream.units import format_time, parse_time

LIST_PARAMETERS = (
    "status",
    "type",
    "limit",
    "cursor",
    "order",
    "created_after",
    "created_before",
    "id_prefix",
    "idempotency_key",
    "error",
)
MAX_NAME_SHOWN = 40  # characters of an unknown parameter's name echoed in the error

MAX_POSITION = 2**63 - 1  # a signed 64-bit integer, as SQLite and PostgreSQL store it
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _digits(allowed: int) -> str:
    """A regex class of the base64 digits whose value `v` has `v & ~allowed == 0`."""
    chars = "".join(c for v, c in enumerate(_ALPHABET) if v & ~allowed == 0)
    return "[" + re.escape(chars) + "]"


# 16 bytes are 128 bits in 22 base64 digits. The top bit of each 8-byte half is 0 (values
# below 2**63): bit 0, the first digit's highest, and bit 64, the second-lowest bit of the
# eleventh digit (bits 60 to 65). The time is finite: its 11 exponent bits (bits 1 to 11)
# are not all ones, so the text does not start with "f_". The last digit holds 2 bits and
# four zero bits.
CURSOR_PATTERN = (
    "^(?:[A-Za-e][A-Za-z0-9_-]|f[A-Za-z0-9-])"
    f"[A-Za-z0-9_-]{{8}}{_digits(0b111101)}[A-Za-z0-9_-]{{10}}{_digits(0b110000)}$"
)
_CURSOR_TEXT = re.compile(CURSOR_PATTERN.removeprefix("^").removesuffix("$"))
_LIMIT_TEXT = re.compile(r"[0-9]{1,10}")
_ID_PREFIX_TEXT = re.compile(rf"[0-9a-fA-F-]{{1,{MAX_ID_PREFIX}}}")
_KEY_TEXT = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
_STATUSES = ", ".join(status.value for status in JobStatus)
_TIME_TEXT = re.compile(TIME_FILTER_PATTERN.removeprefix("^").removesuffix("$"))
# Text to find in an error: no control characters (they cannot be typed into a search).
ERROR_TEXT_PATTERN = f"^[^\\x00-\\x1f\\x7f]{{{MIN_ERROR_TEXT},{MAX_ERROR_TEXT}}}$"
_ERROR_TEXT = re.compile(ERROR_TEXT_PATTERN.removeprefix("^").removesuffix("$"))


def parse_list_query(query_string: str) -> JobFilter:
    """Raises InvalidRequest (or InvalidCursor) naming the parameter at fault."""
    values = _single_values(query_string)
    created_after = _parse_time("created_after", values.get("created_after"))
    created_before = _parse_time("created_before", values.get("created_before"))
    return JobFilter(
        status=_parse_status(values["status"]) if "status" in values else None,
        job_type=_parse_type(values["type"]) if "type" in values else None,
        limit=_parse_limit(values["limit"]) if "limit" in values else DEFAULT_LIMIT,
        after=decode_cursor(values["cursor"]) if "cursor" in values else None,
        order=_parse_order(values["order"]) if "order" in values else "newest",
        created_after=created_after,
        created_before=created_before,
        id_prefix=_parse_id_prefix(values["id_prefix"]) if "id_prefix" in values else None,
        idempotency_key=(
            _parse_key(values["idempotency_key"]) if "idempotency_key" in values else None
        ),
        error=_parse_error(values["error"]) if "error" in values else None,
    )


def _single_values(query_string: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(
            query_string,
            keep_blank_values=True,
            errors="strict",
            max_num_fields=2 * len(LIST_PARAMETERS),
        )
    except ValueError:  # too many fields, or percent-escapes that are not UTF-8
        raise InvalidRequest("the query string is malformed or has too many parameters") from None
    unknown = sorted({name for name, _ in pairs} - set(LIST_PARAMETERS))
    if unknown:
        # Named, to catch typos, but clipped: a name is up to 64 KiB of the client's text.
        raise InvalidRequest(
            f"unknown query parameter(s): {', '.join(_clip(name) for name in unknown)} "
            f"(allowed: {', '.join(LIST_PARAMETERS)})"
        )
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise InvalidRequest(f"query parameter {name!r} is given more than once")
        values[name] = value
    return values


def _clip(name: str) -> str:
    return name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "..."


def _parse_status(text: str) -> JobStatus:
    try:
        return JobStatus(text)
    except ValueError:
        raise InvalidRequest(f"'status' must be one of {_STATUSES}") from None


def _parse_type(text: str) -> str:
    if not 1 <= len(text) <= MAX_TYPE_LENGTH:
        raise InvalidRequest(f"'type' must be 1 to {MAX_TYPE_LENGTH} characters")
    return text


def _parse_limit(text: str) -> int:
    if _LIMIT_TEXT.fullmatch(text) and 1 <= int(text) <= MAX_LIMIT:
        return int(text)
    raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_LIMIT}")


def _parse_order(text: str) -> Order:
    for order in ORDERS:
        if text == order:
            return order
    raise InvalidRequest(f"'order' must be one of {', '.join(ORDERS)}")


def _parse_time(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        if not _TIME_TEXT.fullmatch(text):
            raise ValueError(text)
        return parse_time(text)
    except (ValueError, OverflowError, OSError):
        raise InvalidRequest(
            f"'{name}' must be an RFC 3339 timestamp with a zone, e.g. 2026-01-31T12:00:00Z"
        ) from None


def _parse_id_prefix(text: str) -> str:
    if not _ID_PREFIX_TEXT.fullmatch(text):
        raise InvalidRequest(
            f"'id_prefix' must be 1 to {MAX_ID_PREFIX} characters of a job id "
            "(hexadecimal digits and '-')"
        )
    return text.lower()


def _parse_key(text: str) -> str:
    if not _KEY_TEXT.fullmatch(text):
        raise InvalidRequest(
            f"'idempotency_key' must be 1 to {MAX_KEY_LENGTH} visible ASCII characters"
        )
    return text


def _parse_error(text: str) -> str:
    if not _ERROR_TEXT.fullmatch(text):
        raise InvalidRequest(
            f"'error' must be {MIN_ERROR_TEXT} to {MAX_ERROR_TEXT} characters, none a control "
            "character (text to find in the job's last error)"
        )
    return text


def encode_cursor(position: Position) -> str:
    created_at, seq = position
    if not (0 <= seq <= MAX_POSITION and 0 <= created_at < math.inf):
        raise ValueError(f"a list position must be from 0 to {MAX_POSITION}, at a time >= 0")
    raw = struct.pack(">dq", created_at, seq)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> Position:
    """The store position inside a cursor from `encode_cursor`, or InvalidCursor."""
    if not _CURSOR_TEXT.fullmatch(cursor):
        raise InvalidCursor("'cursor' is not valid; use the one from the Link header")
    created_at, seq = struct.unpack(">dq", base64.urlsafe_b64decode(cursor + "=="))
    return created_at, seq


def query_parameters(query: JobFilter) -> list[tuple[str, str]]:
    """`query`'s order and filters as query parameters (what `parse_list_query` reads)."""
    params: list[tuple[str, str]] = [("order", query.order)]
    if query.status is not None:
        params.append(("status", query.status.value))
    if query.job_type is not None:
        params.append(("type", query.job_type))
    for name, moment in (
        ("created_after", query.created_after),
        ("created_before", query.created_before),
    ):
        if moment is not None:
            params.append((name, format_time(moment) or ""))  # to the microsecond
    for name, text in (
        ("id_prefix", query.id_prefix),
        ("idempotency_key", query.idempotency_key),
        ("error", query.error),
    ):
        if text is not None:
            params.append((name, text))
    return params


def next_page_link(query: JobFilter, next_after: Position) -> str:
    """The `Link` header value for the next page: the same order, filters and limit."""
    params = query_parameters(query)
    params.append(("limit", str(query.limit)))
    params.append(("cursor", encode_cursor(next_after)))
    return f'</jobs?{urlencode(params)}>; rel="next"'
