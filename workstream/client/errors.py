"""The client's errors, and how an HTTP answer outside 2xx becomes one.

An answer outside 2xx raises `ApiError` (or a subclass for the statuses callers branch on),
carrying the API's stable `code`; a transport failure raises `ServerUnreachable`. All are
`WorkStreamError`s, so the CLI can map every failure by `code`.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import math
from datetime import UTC, datetime
from typing import Any

from workstream.errors import WorkStreamError


class ApiError(WorkStreamError):
    """The server answered outside 2xx. `code` is the API's machine code (`"http_<status>"`
    when the body was not the API's JSON error), `body` the parsed JSON or the raw text, and
    `retry_after` the `Retry-After` header in seconds (None when absent)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        body: Any = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"

    def __reduce__(self) -> Any:  # keeps it picklable (process pools) despite the signature
        return type(self), (self.status, self.code, self.message, self.body, self.retry_after)


class UnauthorizedError(ApiError):
    """401: the server has an `API_TOKEN` and the request's token is missing or wrong."""


class NotFoundError(ApiError):
    """404: no such job (or no such path, when the URL points somewhere else)."""


class QueueFullError(ApiError):
    """429: nothing was stored; submit again after `retry_after` seconds."""


class ServerUnreachable(WorkStreamError, ConnectionError):
    """No HTTP answer: refused, unresolvable, reset, TLS failure or timed out. The message names
    the URL. A timed-out POST may still have taken effect; an Idempotency-Key makes it safe to
    send again."""

    code = "server_unreachable"


class WaitTimeout(WorkStreamError, TimeoutError):
    """`Client.wait` gave up. `job` is the last state seen (None if no poll succeeded), so a
    caller can report how far the job got."""

    code = "wait_timeout"

    def __init__(
        self, job_id: str, job: dict[str, Any] | None, timeout: float, reason: str
    ) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout:g}s ({reason})")
        self.job_id = job_id
        self.job = job
        self.timeout = timeout
        self.reason = reason

    def __reduce__(self) -> Any:
        return type(self), (self.job_id, self.job, self.timeout, self.reason)


_ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    401: UnauthorizedError,
    404: NotFoundError,
    429: QueueFullError,
}


def api_error(status: int, reason: str, headers: http.client.HTTPMessage, raw: bytes) -> ApiError:
    """Map an error answer; a body that is not the API's JSON error (a proxy's HTML page, say)
    still gives a usable ApiError, with code `http_<status>`."""
    text = raw.decode("utf-8", "replace")
    body: Any = text
    code, message = f"http_{status}", f"HTTP {status} {reason}".strip()
    with contextlib.suppress(ValueError):
        body = json.loads(text)
    if isinstance(body, dict):
        if isinstance(body.get("code"), str):
            code = body["code"]
        if isinstance(body.get("error"), str):
            message = body["error"]
    cls = _ERRORS_BY_STATUS.get(status, ApiError)
    return cls(status, code, message, body, _retry_after(headers.get("Retry-After")))


def _retry_after(value: str | None) -> int | None:
    """`Retry-After` in seconds: delta-seconds, or an HTTP date counted from now."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0, math.ceil((when - datetime.now(UTC)).total_seconds()))
