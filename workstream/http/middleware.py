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
import logging
import secrets
from collections.abc import Callable
from typing import Any

import falcon

from workstream.errors import Unauthorized

logger = logging.getLogger("workstream.http")

REQUEST_ID_HEADER = "X-Request-Id"
UNAUTHORIZED_MESSAGE = "missing or invalid API token"
MAX_PATH_LOGGED = 200  # characters of a refused request's path written to the log

# The only route a load balancer or orchestrator must reach without credentials (HEAD as
# well as GET: some probes only send HEAD, and both must answer alike).
OPEN_ROUTES = frozenset({("GET", "/health"), ("HEAD", "/health")})

# Called once per refused request; the composition root counts them in a metric (the HTTP
# layer knows no metrics library).
AuthFailureHook = Callable[[], None]


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
    """Requires `Authorization: Bearer <token>` on every route but `/health` (GET, HEAD).

    Every failure (no header, another scheme, a wrong token) gets the same 401, so a
    client learns nothing about why. The comparison is constant-time on bytes. Neither the
    token nor the header is ever logged or echoed. Each failure is logged (`auth_failed`,
    with the method, the path clipped, the peer address and which kind of failure it was)
    and reported to `on_failure`, so that a guessing client shows in the log and metrics.
    """

    def __init__(self, token: str, on_failure: AuthFailureHook | None = None) -> None:
        self._expected = token.encode("utf-8")
        self._on_failure = on_failure

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (req.method, req.path) in OPEN_ROUTES:
            return
        problem = self._problem(req.get_header("Authorization"))
        if problem is not None:
            self._report(req, problem)
            raise Unauthorized(UNAUTHORIZED_MESSAGE)

    def _report(self, req: falcon.Request, problem: str) -> None:
        path = req.path
        if len(path) > MAX_PATH_LOGGED:
            path = path[:MAX_PATH_LOGGED] + "..."
        logger.warning(
            "authentication failed: %s",
            problem,
            extra={
                "event": "auth_failed",
                "request_id": request_id_of(req),
                "method": req.method[:16],
                "path": path,
                "remote_addr": req.remote_addr,
                "reason": problem,
            },
        )
        if self._on_failure is not None:
            try:
                self._on_failure()
            except Exception:  # a broken counter must not turn a 401 into a 500
                logger.exception("the auth failure hook raised", extra={"event": "http_error"})

    def _problem(self, header: str | None) -> str | None:
        """None when the header carries the token; otherwise what is wrong with it."""
        if not header:
            return "no Authorization header"
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip(" ")
        if scheme.lower() != "bearer" or not credentials:
            return "not a Bearer token"
        try:
            # WSGI hands headers over as latin-1 text; this recovers the bytes sent.
            presented = credentials.encode("latin-1")
        except UnicodeEncodeError:
            return "wrong token"
        if not hmac.compare_digest(presented, self._expected):
            return "wrong token"
        return None
