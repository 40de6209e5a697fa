"""The `webhook` built-in handler: POST a JSON body to a URL; a non-2xx answer fails.

    {"url": "https://example.com/hook", "body": {...}, "headers"?: {...}, "timeout"?: 10}

Delivery is at-least-once, so every request carries `X-WorkStream-Job-Id` and
`X-WorkStream-Attempt`: a receiver that has seen the job id can drop the repeat.
Redirects are not followed: a POST silently turned into a GET at another address is a
delivery nobody asked for. Error messages name only `scheme://host[:port]`, since query
strings often carry secrets and `last_error` is shown to every API client.
"""

from __future__ import annotations

import http.client
import json
import math
import string
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from workstream.handlers import Handler
from workstream.jobs.model import JobContext

MAX_URL_CHARS = 2048
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0
HANDLER_TIMEOUT = 70.0
MAX_HEADERS = 50
MAX_HEADER_VALUE_CHARS = 8192
MAX_RESULT_BODY_CHARS = 2000
USER_AGENT = "WorkStream-webhook"
_FIELDS = frozenset({"url", "body", "headers", "timeout"})
# Set by the handler; a payload may not replace them (framing, routing, deduplication).
_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "x-workstream-job-id",
        "x-workstream-attempt",
    }
)
# RFC 9110 token characters: what a header name may be made of.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters)


class WebhookError(Exception):
    """The receiver could not be reached, or did not answer 2xx."""


@dataclass(frozen=True)
class WebhookRequest:
    """A validated `webhook` payload."""

    url: str
    origin: str  # scheme://host[:port], safe to show in errors
    body: Any
    headers: dict[str, str]
    timeout: float


def origin_of(parts: urllib.parse.SplitResult) -> str:
    """`scheme://host[:port]` of a URL: no user info, path or query, which may be secret."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _check_url(url: Any) -> tuple[str, str]:
    if not isinstance(url, str):
        raise ValueError("'url' must be a string")
    if not url:
        raise ValueError("'url' must not be empty")
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"'url' is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("'url' must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("'url' is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("'url' must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("'url' must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("'url' must not carry credentials; send them in 'headers'")
    return url, origin_of(parts)


def _check_headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict):
        raise ValueError("'headers' must be an object of header names to string values")
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"'headers' has more than {MAX_HEADERS} entries")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
            raise ValueError(f"'headers': {name!r} is not a valid header name")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"'headers': {name!r} is set by WorkStream and cannot be replaced")
        if not isinstance(value, str):
            raise ValueError(f"'headers': the value of {name!r} must be a string")
        if "\r" in value or "\n" in value:
            raise ValueError(f"'headers': the value of {name!r} must not contain line breaks")
        if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
            raise ValueError(f"'headers': the value of {name!r} has control characters")
        if len(value) > MAX_HEADER_VALUE_CHARS:
            raise ValueError(
                f"'headers': the value of {name!r} is longer than {MAX_HEADER_VALUE_CHARS}"
            )
        try:
            value.encode("latin-1")  # what HTTP/1.1 can carry (http.client's encoding)
        except UnicodeEncodeError:
            raise ValueError(f"'headers': the value of {name!r} is not ISO-8859-1 text") from None
        checked[name] = value
    return checked


def _check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ValueError("'timeout' must be a number of seconds")
    if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"'timeout' must be more than 0 and at most {MAX_TIMEOUT:g} seconds")
    return float(timeout)


def parse_webhook_payload(payload: Any) -> WebhookRequest:
    """Check a `webhook` payload and return it normalised; ValueError says why not."""
    if not isinstance(payload, dict):
        raise ValueError('expected an object like {"url": "https://...", "body": {...}}')
    unknown = sorted(str(key) for key in payload if key not in _FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_FIELDS))})")
    if "url" not in payload:
        raise ValueError("'url' is required")
    url, origin = _check_url(payload["url"])
    headers = _check_headers(payload.get("headers", {}))
    timeout = _check_timeout(payload.get("timeout", DEFAULT_TIMEOUT))
    body = payload.get("body")
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError("'body' must be a JSON value") from None
    return WebhookRequest(url, origin, body, headers, timeout)


def validate_webhook_payload(payload: Any) -> None:
    """Refuse at submission a payload that could never be delivered."""
    parse_webhook_payload(payload)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turn every 3xx into an HTTPError instead of following it."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> None:
        return None


def _opener() -> urllib.request.OpenerDirector:
    # Proxies from the environment (HTTPS_PROXY, NO_PROXY) are honoured, as in other tools.
    return urllib.request.build_opener(_RefuseRedirects())


def _read_text(response: http.client.HTTPResponse) -> str:
    """The first characters of the answer as text; the rest is never read (it may be huge)."""
    raw = response.read(MAX_RESULT_BODY_CHARS * 4)
    charset = response.headers.get_content_charset() or "utf-8"
    try:
        text = raw.decode(charset, "replace")
    except LookupError:
        text = raw.decode("utf-8", "replace")
    return text[:MAX_RESULT_BODY_CHARS]


def _unreachable(request: WebhookRequest, reason: object) -> WebhookError:
    if isinstance(reason, TimeoutError):
        return WebhookError(f"no answer from {request.origin} within {request.timeout:g}s")
    text = str(reason) or type(reason).__name__
    return WebhookError(f"cannot reach {request.origin}: {text}")


def post_webhook(request: WebhookRequest, job: JobContext) -> dict[str, Any]:
    """POST once; return {"status", "body"} on 2xx, raise WebhookError otherwise."""
    # ASCII-only JSON: same value for the receiver, and no encoding error on odd strings.
    data = json.dumps(request.body, allow_nan=False).encode("ascii")
    headers = {
        "User-Agent": USER_AGENT,
        **request.headers,
        "Content-Type": "application/json",
        "X-WorkStream-Job-Id": job.id,
        "X-WorkStream-Attempt": str(job.attempt),
    }
    http_request = urllib.request.Request(request.url, data=data, headers=headers, method="POST")
    try:
        with _opener().open(http_request, timeout=request.timeout) as response:
            return {"status": response.status, "body": _read_text(response)}
    except urllib.error.HTTPError as exc:
        exc.close()
        note = " (redirects are not followed)" if 300 <= exc.code < 400 else ""
        raise WebhookError(f"HTTP {exc.code} from {request.origin}{note}") from None
    except urllib.error.URLError as exc:
        raise _unreachable(request, exc.reason) from None
    except http.client.HTTPException as exc:
        raise WebhookError(f"bad HTTP answer from {request.origin}: {type(exc).__name__}") from None
    except OSError as exc:  # timeouts and resets while reading the answer
        raise _unreachable(request, exc) from None


def webhook(payload: Any, job: JobContext) -> dict[str, Any]:
    """POST the payload's `body` to its `url`; a non-2xx answer fails the attempt."""
    return post_webhook(parse_webhook_payload(payload), job)


def make_webhook_handler() -> Handler:
    """The `webhook` handler. Its timeout sits above the largest per-request timeout, so
    the request's own timeout fires first and gives the clearer message."""
    return Handler("webhook", webhook, timeout=HANDLER_TIMEOUT, validate=validate_webhook_payload)
