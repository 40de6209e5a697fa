"""Cross-cutting request handling: a request id on every response, and the API token.

Both run before routing, so they also cover unknown paths and wrong methods: with a token
set, an anonymous client cannot even learn which paths exist.

`OPTIONS` is not part of the API (no operation of /openapi.json uses it, and the API
serves no browsers cross-origin): Falcon's built-in OPTIONS responder would answer 200
with an empty body, so the request id middleware answers it 405 like any other method the
route does not serve, with the `Allow` header listing those it does.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

import falcon

from workstream.errors import Unauthorized

REQUEST_ID_HEADER = "X-Request-Id"
UNAUTHORIZED_MESSAGE = "missing or invalid API token"

# The only route a load balancer or orchestrator must reach without credentials.
_OPEN_ROUTES = frozenset({("GET", "/health")})


def new_request_id() -> str:
    return secrets.token_hex(16)


def request_id_of(req: falcon.Request) -> str:
    """This request's id, created on first use: an error raised before any middleware ran
    still gets one, and it is the same id in the body, the header and the log."""
    request_id = getattr(req.context, "request_id", None)
    if request_id is None:
        request_id = new_request_id()
        req.context.request_id = request_id
    return request_id


class RequestIdMiddleware:
    """Tags every response with `X-Request-Id` (random; a client-sent id is not trusted)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        request_id_of(req)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        if req.method == "OPTIONS" and resource is not None:
            allowed = [
                method
                for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
                if callable(getattr(resource, f"on_{method.lower()}", None))
            ]
            raise falcon.HTTPMethodNotAllowed(allowed)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_header(REQUEST_ID_HEADER, request_id_of(req))


class TokenAuthMiddleware:
    """Requires `Authorization: Bearer <token>` on every route but `GET /health`.

    Every failure (no header, another scheme, a wrong token) gets the same 401, so a
    client learns nothing about why. The comparison is constant-time on bytes. Neither the
    token nor the header is ever logged or echoed.
    """

    def __init__(self, token: str) -> None:
        self._expected = token.encode("utf-8")

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (req.method, req.path) in _OPEN_ROUTES:
            return
        if not self._is_authorized(req.get_header("Authorization")):
            raise Unauthorized(UNAUTHORIZED_MESSAGE)

    def _is_authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip(" ")
        if scheme.lower() != "bearer" or not credentials:
            return False
        try:
            # WSGI hands headers over as latin-1 text; this recovers the bytes sent.
            presented = credentials.encode("latin-1")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(presented, self._expected)
