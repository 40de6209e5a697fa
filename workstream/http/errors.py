"""Every error the HTTP API can answer, mapped in one place.

The rest of WorkStream raises `WorkStreamError`s with HTTP-free codes; this module decides
their status codes and extra headers (`STATUS_BY_CODE`, `_extra_headers`). It also turns
Falcon's own errors (unknown path, wrong method, bad header) and unexpected exceptions
into the same body, so a client only ever sees

    {"error": "<message>", "code": "<code>"}            (4xx)
    {"error": "<message>", "code": "<code>", "request_id": "<id>"}    (5xx)

Only messages written on purpose reach a client: a `WorkStreamError`'s message (safe by
contract), a fixed text for Falcon's errors, "internal error" for everything else. The
request id of every 5xx is logged, so an operator can find what happened.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import falcon

from workstream.errors import QueueFull, WorkStreamError
from workstream.http.middleware import request_id_of
from workstream.http.render import JSON

logger = logging.getLogger("workstream.http")


class InvalidCursor(WorkStreamError):
    """The `cursor` query parameter is not one this server handed out.

    Lives here rather than in `workstream.errors` because only the HTTP layer has cursors.
    """

    code = "invalid_cursor"


STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "invalid_json": 400,
    "invalid_payload": 400,
    "invalid_cursor": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "invalid_state": 409,
    "idempotency_key_reused": 409,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "unknown_job_type": 422,
    "queue_full": 429,
    "too_many_scheduled_jobs": 429,
    "shutting_down": 503,
    "storage_unavailable": 503,
    "service_busy": 503,
}

# Falcon raises a few errors itself (routing, header parsing). They get our codes and fixed
# messages: Falcon's titles are fine, but a fixed text is guaranteed to name no library.
_FALCON_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "the request is malformed"),
    404: ("not_found", "no such path"),
    405: ("method_not_allowed", "method not allowed"),
    413: ("payload_too_large", "the request body is too large"),
    415: ("unsupported_media_type", "unsupported media type"),
}

INTERNAL_ERROR_MESSAGE = "internal error"
INTERNAL_ERROR_CODE = "internal_error"


def error_body(message: str, code: str, request_id: str | None = None) -> bytes:
    """The one error body. Shared with `server.py`, whose errors never reach Falcon."""
    body: dict[str, Any] = {"error": message, "code": code}
    if request_id is not None:
        body["request_id"] = request_id
    return json.dumps(body).encode("utf-8")


def _send_error(
    req: falcon.Request,
    resp: falcon.Response,
    status: int,
    message: str,
    code: str,
    headers: dict[str, str] | None = None,
) -> None:
    request_id = request_id_of(req) if status >= 500 else None
    resp.status = status
    resp.content_type = JSON
    resp.data = error_body(message, code, request_id)
    for name, value in (headers or {}).items():
        resp.set_header(name, value)


def _extra_headers(error: WorkStreamError) -> dict[str, str]:
    if isinstance(error, QueueFull):
        # Whole seconds as HTTP wants them, and never 0: that would invite a busy loop.
        return {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    if error.code in ("storage_unavailable", "service_busy"):
        return {"Retry-After": "1"}
    if error.code == "unauthorized":
        return {"WWW-Authenticate": "Bearer"}
    return {}


def handle_workstream_error(
    req: falcon.Request, resp: falcon.Response, error: WorkStreamError, params: dict[str, Any]
) -> None:
    status = STATUS_BY_CODE.get(error.code)
    if status is None:
        # A code with no HTTP meaning (stale_attempt, database_in_use, ...) escaping to a
        # client is a bug; its message may describe internals, so it is not shown.
        handle_unexpected_error(req, resp, error, params)
        return
    if status >= 500:
        logger.warning(
            "%s %s answered %d %s",
            req.method,
            req.path,
            status,
            error.code,
            extra={"event": "http_error", "request_id": request_id_of(req), "code": error.code},
        )
    _send_error(req, resp, status, error.message, error.code, _extra_headers(error))


def handle_falcon_error(
    req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError, params: dict[str, Any]
) -> None:
    status = error.status_code
    code, message = _FALCON_ERRORS.get(status, ("", ""))
    if not code:
        if status >= 500:
            handle_unexpected_error(req, resp, error, params)
            return
        code, message = "invalid_request", "the request cannot be served"
    if status == 405:
        allowed = dict(error.headers or {}).get("Allow", "")  # a dict or (name, value) pairs
        message = f"{req.method} is not allowed here (allowed: {allowed})"
    elif status == 400 and error.description:
        # Header-parsing errors explain which header is wrong; their text names no library.
        message = error.description
    # Keep Falcon's headers: the Allow header of a 405 must survive.
    _send_error(req, resp, status, message, code, dict(error.headers or {}))


def handle_unexpected_error(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: dict[str, Any]
) -> None:
    request_id = request_id_of(req)
    logger.error(
        "unexpected error in %s %s",
        req.method,
        req.path,
        exc_info=error,
        extra={"event": "http_error", "request_id": request_id},
    )
    _send_error(req, resp, 500, INTERNAL_ERROR_MESSAGE, INTERNAL_ERROR_CODE)


def register_error_handlers(app: falcon.App) -> None:
    """Install the handlers. Falcon picks the most specific class, so the order is free."""
    app.add_error_handler(Exception, handle_unexpected_error)
    app.add_error_handler(falcon.HTTPError, handle_falcon_error)
    app.add_error_handler(WorkStreamError, handle_workstream_error)
