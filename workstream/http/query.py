"""The query of `GET /jobs`: filters, page size, and the opaque cursor.

The query string is parsed here rather than through Falcon's `req.params` so that unknown
and repeated parameters can be refused instead of silently ignored or merged: a typo such
as `?staus=failed` must not quietly list every job.

The cursor wraps the store's position (`JobPage.next_after`, 0 to 2**63 - 1) as the
URL-safe base64, unpadded, of its 8 bytes big-endian: always 11 characters, so that
clients treat it as opaque and a later format can be told apart by its length. Every
string of `CURSOR_PATTERN` decodes to a position and no other string does, so the API
description states exactly which cursors the server accepts (a position past the end
lists nothing).
"""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qsl, urlencode

from workstream.errors import InvalidRequest
from workstream.http.errors import InvalidCursor
from workstream.jobs.limits import MAX_TYPE_LENGTH
from workstream.jobs.listing import DEFAULT_LIMIT, MAX_LIMIT, JobFilter
from workstream.jobs.model import JobStatus

LIST_PARAMETERS = ("status", "type", "limit", "cursor")
MAX_NAME_SHOWN = 40  # characters of an unknown parameter's name echoed in the error

MAX_POSITION = 2**63 - 1  # a signed 64-bit integer, as SQLite and PostgreSQL store it
_POSITION_BYTES = 8
# 8 bytes are 64 bits in 11 base64 digits: the first holds the top 6 bits, whose highest is
# 0 (a position is below 2**63), and the last holds 4 bits followed by two zero bits.
CURSOR_PATTERN = r"^[A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048]$"
_CURSOR_TEXT = re.compile(CURSOR_PATTERN.removeprefix("^").removesuffix("$"))
_LIMIT_TEXT = re.compile(r"[0-9]{1,10}")
_STATUSES = ", ".join(status.value for status in JobStatus)


def parse_list_query(query_string: str) -> JobFilter:
    """Raises InvalidRequest (or InvalidCursor) naming the parameter at fault."""
    values = _single_values(query_string)
    status = _parse_status(values["status"]) if "status" in values else None
    job_type = _parse_type(values["type"]) if "type" in values else None
    limit = _parse_limit(values["limit"]) if "limit" in values else DEFAULT_LIMIT
    after = decode_cursor(values["cursor"]) if "cursor" in values else None
    return JobFilter(status=status, job_type=job_type, limit=limit, after=after)


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


def encode_cursor(position: int) -> str:
    if not 0 <= position <= MAX_POSITION:
        raise ValueError(f"a list position must be from 0 to {MAX_POSITION}")
    raw = position.to_bytes(_POSITION_BYTES, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The store position inside a cursor from `encode_cursor`, or InvalidCursor."""
    if not _CURSOR_TEXT.fullmatch(cursor):
        raise InvalidCursor("'cursor' is not valid; use the one from the Link header")
    return int.from_bytes(base64.urlsafe_b64decode(cursor + "="), "big")


def next_page_link(query: JobFilter, next_after: int) -> str:
    """The `Link` header value for the next page: the same filters and limit."""
    params: list[tuple[str, str]] = []
    if query.status is not None:
        params.append(("status", query.status.value))
    if query.job_type is not None:
        params.append(("type", query.job_type))
    params.append(("limit", str(query.limit)))
    params.append(("cursor", encode_cursor(next_after)))
    return f'</jobs?{urlencode(params)}>; rel="next"'
