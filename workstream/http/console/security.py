"""The console's guard: sessions, CSRF, Origin checks and the security headers.

The console is for people in a browser, the API for programs; both sit behind the same
`API_TOKEN`, but a browser cannot be asked to send `Authorization: Bearer` on every click
without JavaScript holding the token. So:

* With a token, `POST /ui/login` (the token typed into a form) sets a session cookie:
  `<id>.<issued>.<mac>`, the MAC an HMAC-SHA256 under a key that is itself an HMAC of the
  token. The raw token is never stored in the browser; changing the token ends every
  session; the cookie is HttpOnly, SameSite=Strict, Path=/ and Secure on https. It is
  valid for `SESSION_TTL`. It opens the console's pages only: the API still wants the
  bearer token (a cookie on the API would make every API endpoint a CSRF target).
* Without a token, the API trusts whoever reaches the port when the request is addressed to
  this machine (`HostCheckMiddleware`); the console does the same, consistently: no login,
  the same `Host`/`Origin` checks, and an anonymous session (random key per process) only
  to carry the CSRF token.
* Every state-changing console request (any method but GET/HEAD) is refused with 403 when
  `Sec-Fetch-Site` says another site sent it, or `Origin` is not this server's own; and it
  must carry the session's CSRF token (an HMAC of the session id) in the form field
  `csrf` or the `X-CSRF-Token` header (htmx sends it from `hx-headers` on `<body>`).
* Every console response carries a strict Content-Security-Policy (no inline script or
  style, no eval), `X-Robots-Tag: noindex`, `Referrer-Policy: same-origin`,
  `X-Content-Type-Options: nosniff`, and is not cached.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import falcon
from markupsafe import escape

from workstream.http.hosts import HostCheckMiddleware
from workstream.http.middleware import AuthFailureHook, request_id_of

logger = logging.getLogger("workstream.console")

SESSION_COOKIE = "workstream_console"
SESSION_TTL = 12 * 3600.0  # seconds a login lasts
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
CONSOLE_PREFIX = "/ui/"
# Console paths a visitor without a session may reach (with a token configured).
PUBLIC_PREFIXES = ("/ui/login", "/ui/static/")
SAFE_METHODS = frozenset({"GET", "HEAD"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def is_console_path(path: str) -> bool:
    return path == "/" or path == "/ui" or path.startswith(CONSOLE_PREFIX)


@dataclass(frozen=True)
class Session:
    id: str
    issued_at: float
    anonymous: bool

    @property
    def who(self) -> str:
        """How the logs name this session: a digest of its id (the id itself is the
        credential and is never logged)."""
        return hashlib.sha256(self.id.encode()).hexdigest()[:12]


class Sessions:
    """Issues and checks signed session values; derives each session's CSRF token."""

    def __init__(self, token: str | None, clock: Callable[[], float] = time.time) -> None:
        self.login_required = bool(token)
        if token:
            self._key = hmac.new(
                token.encode("utf-8"), b"workstream console session v1", hashlib.sha256
            ).digest()
        else:
            self._key = secrets.token_bytes(32)
        self._clock = clock

    def _mac(self, value: str) -> str:
        return hmac.new(self._key, value.encode("ascii"), hashlib.sha256).hexdigest()

    def issue(self) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(18)
        issued = int(self._clock())
        value = f"{session_id}.{issued}"
        return f"{value}.{self._mac(value)}", Session(
            session_id, float(issued), not self.login_required
        )

    def check(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > 200:
            return None
        value, _, mac = cookie.rpartition(".")
        session_id, _, issued_text = value.partition(".")
        if not session_id or not issued_text.isdigit():
            return None
        try:
            expected = self._mac(value)
        except UnicodeEncodeError:
            return None
        if not hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii")):
            return None
        issued = float(issued_text)
        if not issued - 60 <= self._clock() < issued + SESSION_TTL:
            return None
        return Session(session_id, issued, not self.login_required)

    def csrf_token(self, session: Session) -> str:
        return self._mac(f"csrf:{session.id}")

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(
            presented.encode("utf-8", "replace"), self.csrf_token(session).encode("ascii")
        )

    def check_token(self, presented: str, token: str | None) -> bool:
        if token is None:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8"))


def set_session_cookie(req: falcon.Request, resp: falcon.Response, value: str) -> None:
    """Secure when the request came over https, also as a TLS-terminating proxy says it
    (`X-Forwarded-Proto`/`Forwarded`): trusting that header can only make the cookie
    stricter, never looser."""
    resp.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(SESSION_TTL),
        path="/",
        secure="https" in (req.scheme, req.forwarded_scheme),
        http_only=True,
        same_site="Strict",
    )


def clear_session_cookie(req: falcon.Request, resp: falcon.Response) -> None:
    resp.unset_cookie(SESSION_COOKIE, path="/", same_site="Strict")


def form_of(req: falcon.Request) -> dict[str, Any]:
    """The request's urlencoded form (cached on the request), or {}."""
    cached = getattr(req.context, "console_form", None)
    if cached is not None:
        return cached
    form: dict[str, Any] = {}
    if req.content_type and req.content_type.startswith("application/x-www-form-urlencoded"):
        media = req.get_media(default_when_empty={})
        if isinstance(media, dict):
            form = media
    req.context.console_form = form
    return form


def wants_html(req: falcon.Request) -> bool:
    return "text/html" in (req.get_header("Accept") or "") or bool(req.get_header("HX-Request"))


def refuse(
    req: falcon.Request, resp: falcon.Response, status: int, code: str, message: str
) -> None:
    """Answer now (the resource does not run): an HTML page for a browser, else JSON."""
    resp.status = status
    if wants_html(req):
        resp.content_type = falcon.MEDIA_HTML
        resp.text = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="robots" content="noindex"><title>Refused</title>'
            '<link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml">'
            '<link rel="stylesheet" href="/ui/static/console.css"></head><body>'
            f'<main class="refused"><h1>{status} — refused</h1><p>{escape(message)}</p>'
            '<p><a href="/">Back to the console</a></p></main></body></html>'
        )
    else:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"error": message, "code": code})
    resp.complete = True


def same_origin(req: falcon.Request) -> str | None:
    """None when nothing says another site sent this request; otherwise why it is refused."""
    fetch_site = (req.get_header("Sec-Fetch-Site") or "").lower()
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site[:20]}"
    origin = req.get_header("Origin")
    if origin is None:
        return None
    host = (req.get_header("Host") or "").lower()
    parts = urlsplit(origin.strip().lower())
    if origin.strip().lower() == "null" or parts.scheme not in ("http", "https"):
        return "Origin is not this server"
    if not host or parts.netloc != host:
        return "Origin is not this server"
    return None


class ConsoleGuard:
    """The app's access middleware: the API's own guard for API paths; sessions, Origin and
    CSRF checks and security headers for the console's (`/` and `/ui/...`)."""

    def __init__(
        self,
        api_guard: Any,
        sessions: Sessions,
        *,
        read_only: bool,
        host_check: HostCheckMiddleware | None,
        on_auth_failure: AuthFailureHook | None = None,
    ) -> None:
        self._api_guard = api_guard
        self.sessions = sessions
        self.read_only = read_only
        self._host_check = host_check
        self._on_auth_failure = on_auth_failure

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not is_console_path(req.path):
            self._api_guard.process_request(req, resp)
            return
        if self._host_check is not None:
            self._host_check.process_request(req, resp)  # raises Forbidden (403 JSON)
        cookie = req.cookies.get(SESSION_COOKIE)
        session = self.sessions.check(cookie if isinstance(cookie, str) else None)
        public = req.path.startswith(PUBLIC_PREFIXES)
        if session is None and not self.sessions.login_required and not public:
            value, session = self.sessions.issue()
            req.context.console_new_cookie = value
        req.context.console_session = session
        if req.method not in SAFE_METHODS:
            problem = same_origin(req)
            if problem is not None:
                self._log_refusal(req, "cross_origin", problem)
                refuse(req, resp, 403, "forbidden", f"cross-origin request refused ({problem})")
                return
        if session is None and not public:
            self._log_refusal(req, "no_session", "no valid console session")
            if req.method in SAFE_METHODS and not req.get_header("HX-Request"):
                target = req.relative_uri if req.path != "/" else "/"
                raise falcon.HTTPSeeOther(
                    "/ui/login?" + falcon.to_query_str({"next": target}, prefix=False)
                )
            resp.set_header("HX-Redirect", "/ui/login")
            refuse(req, resp, 401, "unauthorized", "log in to the console first")
            return
        if req.method not in SAFE_METHODS and not req.path.startswith("/ui/login"):
            assert session is not None
            presented = req.get_header(CSRF_HEADER) or form_of(req).get(CSRF_FIELD)
            if not isinstance(presented, str) or not self.sessions.csrf_ok(session, presented):
                self._log_refusal(req, "csrf", "missing or wrong CSRF token")
                refuse(req, resp, 403, "forbidden", "missing or wrong CSRF token")
                return
            if self.read_only and not req.path.startswith("/ui/logout"):
                self._log_refusal(req, "read_only", "the console is read-only")
                refuse(req, resp, 403, "read_only", "the console is read-only (CONSOLE_READ_ONLY)")
                return

    def _log_refusal(self, req: falcon.Request, reason: str, detail: str) -> None:
        logger.warning(
            "console request refused: %s",
            detail,
            extra={
                "event": "console_refused",
                "request_id": request_id_of(req),
                "method": req.method[:16],
                "path": req.path[:200],
                "remote_addr": req.remote_addr,
                "reason": reason,
            },
        )
        if reason == "no_session" and self._on_auth_failure is not None and req.method != "GET":
            self._on_auth_failure()

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        hook = getattr(self._api_guard, "process_resource", None)
        if hook is not None and not is_console_path(req.path):
            hook(req, resp, resource, params)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        hook = getattr(self._api_guard, "process_response", None)
        if not is_console_path(req.path):
            if hook is not None:
                hook(req, resp, resource, req_succeeded)
            return
        for name, value in SECURITY_HEADERS.items():
            resp.set_header(name, value)
        if not req.path.startswith("/ui/static/"):
            resp.set_header("Cache-Control", "no-store")
        new_cookie = getattr(req.context, "console_new_cookie", None)
        if new_cookie is not None:
            set_session_cookie(req, resp, new_cookie)
