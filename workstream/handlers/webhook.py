"""The `webhook` built-in handler: POST a JSON body to a URL; a non-2xx answer fails.

    {"url": "https://example.com/hook", "body": {...}, "headers"?: {...}, "timeout"?: 10,
     "return_body"?: false}

Delivery is at-least-once, so every request carries `X-WorkStream-Job-Id` and
`X-WorkStream-Attempt`: a receiver that has seen the job id can drop the repeat.
Redirects are not followed: a POST silently turned into a GET at another address is a
delivery nobody asked for. Error messages name only `scheme://host[:port]`, since query
strings often carry secrets and `last_error` is shown to every API client.

Where it may connect (`netguard`): the host is resolved once, every address checked, and
the connection made to a checked address. Loopback, private, link-local and other
non-public addresses are refused unless the operator allows them (`allow_hosts`); a URL
that names such an address literally (`http://127.1/`) is refused at submission (400).
Proxies from the environment are not used: the check must be of the address connected to.

- `timeout` (seconds, default 10, at most 60) bounds the whole request: resolving,
  connecting, TLS, sending and reading the answer.
- The result is `{"status": 200}`. With `"return_body": true` it also has `"body"`: the
  first 2000 characters of the answer, as text. The answer is otherwise not read.
- Failures say only what a client needs: "could not connect to <origin>" for anything
  before the request was sent (no such name, refused, unreachable, TLS), "no answer from
  <origin> within <timeout>s", "HTTP <status> from <origin>"; the detail goes to the log.
- The URL's host must be ASCII (write an internationalised name in its `xn--` form); other
  non-ASCII characters in the path and query are sent percent-encoded as UTF-8.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import string
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from workstream.errors import ConfigError
from workstream.handlers import Handler
from workstream.handlers import webhook_http as transport
from workstream.handlers.netguard import (
    DestinationPolicy,
    DestinationRefused,
    ResolutionFailed,
    Resolver,
    is_host_name,
    literal_address,
    system_resolver,
)
from workstream.jobs.model import JobContext

log = logging.getLogger(__name__)

MAX_URL_CHARS = 2048
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0
HANDLER_TIMEOUT = 70.0
MAX_HEADERS = 50
MAX_HEADER_VALUE_CHARS = 8192
MAX_RESULT_BODY_CHARS = 2000
USER_AGENT = "WorkStream-webhook"
_FIELDS = frozenset({"url", "body", "headers", "timeout", "return_body"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
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
    return_body: bool = False

    @property
    def parts(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url)

    @property
    def host(self) -> str:
        """The host name or address, ASCII, lower case, without IPv6 brackets."""
        return self.parts.hostname or ""

    @property
    def port(self) -> int:
        parts = self.parts
        return parts.port or _DEFAULT_PORTS[parts.scheme]

    @property
    def host_header(self) -> str:
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        port = self.parts.port
        default = _DEFAULT_PORTS[self.parts.scheme]
        return host if port in (None, default) else f"{host}:{port}"

    @property
    def target(self) -> str:
        """Path and query for the request line (the fragment is never sent)."""
        parts = self.parts
        path = parts.path or "/"
        return f"{path}?{parts.query}" if parts.query else path


def origin_of(parts: urllib.parse.SplitResult) -> str:
    """`scheme://host[:port]` of a URL: no user info, path or query, which may be secret."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _percent_encode_non_ascii(text: str) -> str:
    """Non-ASCII characters as UTF-8 percent escapes, as browsers send them; the rest
    (existing escapes included) unchanged."""
    if text.isascii():
        return text
    return "".join(ch if ch.isascii() else urllib.parse.quote(ch, safe="") for ch in text)


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
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("'url' is not valid Unicode text") from None
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
    if not parts.netloc.isascii():
        raise ValueError(
            "'url': write the host name in ASCII (an internationalised name in its xn-- form)"
        )
    if literal_address(parts.hostname) is None and not is_host_name(parts.hostname):
        raise ValueError("'url' does not name a valid host")
    # The request line is ASCII: send other non-ASCII characters percent-encoded.
    url = urllib.parse.urlunsplit(
        parts._replace(
            path=_percent_encode_non_ascii(parts.path),
            query=_percent_encode_non_ascii(parts.query),
            fragment="",
        )
    )
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
    return_body = payload.get("return_body", False)
    if not isinstance(return_body, bool):
        raise ValueError("'return_body' must be true or false")
    return WebhookRequest(url, origin, body, headers, timeout, return_body)


def validate_webhook_payload(payload: Any) -> None:
    """Refuse at submission a payload that could never be delivered (its form only; the
    handler's own validator also refuses a destination its policy forbids)."""
    parse_webhook_payload(payload)


def _decode(answer: transport.Answer) -> str:
    try:
        text = answer.body.decode(answer.charset or "utf-8", "replace")
    except LookupError:
        text = answer.body.decode("utf-8", "replace")
    return text[:MAX_RESULT_BODY_CHARS]


class WebhookSender:
    """Sends validated requests under one destination policy."""

    def __init__(
        self,
        policy: DestinationPolicy,
        resolver: Resolver = system_resolver,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self._tls_context = tls_context

    def _tls(self) -> ssl.SSLContext:
        if self._tls_context is None:  # made once, on first use: loading CAs takes a while
            self._tls_context = ssl.create_default_context()
        return self._tls_context

    def validate(self, payload: Any) -> None:
        """At submission: the payload's form, and a destination refused without DNS."""
        request = parse_webhook_payload(payload)
        try:
            self.policy.check_literal(request.host)
        except DestinationRefused as exc:
            raise ValueError(f"'url': {exc}") from None

    def _could_not_connect(
        self, request: WebhookRequest, job: JobContext, why: str
    ) -> WebhookError:
        log.warning(
            "webhook to %s: could not connect: %s",
            request.origin,
            why,
            extra={"event": "webhook_unreachable", "job_id": job.id},
        )
        return WebhookError(f"could not connect to {request.origin}")

    def send(self, request: WebhookRequest, job: JobContext) -> dict[str, Any]:
        """POST once; return {"status"[, "body"]} on 2xx, raise WebhookError otherwise."""
        deadline = transport.Deadline(request.timeout)
        try:
            addresses = self.policy.resolve(
                request.host, request.port, self.resolver, deadline.left()
            )
        except DestinationRefused as exc:
            raise WebhookError(f"refused to connect to {request.origin}: {exc}") from None
        except ResolutionFailed as exc:
            raise self._could_not_connect(request, job, str(exc)) from None
        try:
            sock = transport.connect(addresses, request.port, deadline)
        except transport.ConnectFailed as exc:
            raise self._could_not_connect(request, job, str(exc)) from None
        # ASCII-only JSON: same value for the receiver, and no encoding error on odd strings.
        data = json.dumps(request.body, allow_nan=False).encode("ascii")
        headers = {
            "User-Agent": USER_AGENT,
            **request.headers,
            "Content-Type": "application/json",
            "X-WorkStream-Job-Id": job.id,
            "X-WorkStream-Attempt": str(job.attempt),
        }
        try:
            answer = transport.post(
                sock,
                tls=self._tls() if request.parts.scheme == "https" else None,
                host=request.host,
                host_header=request.host_header,
                target=request.target,
                headers=headers,
                data=data,
                read_body=request.return_body,
                deadline=deadline,
            )
        except transport.ConnectFailed as exc:
            raise self._could_not_connect(request, job, str(exc)) from None
        except transport.Timeout:
            raise WebhookError(
                f"no answer from {request.origin} within {request.timeout:g}s"
            ) from None
        except transport.BadAnswer as exc:
            log.warning(
                "webhook to %s: bad answer: %s",
                request.origin,
                exc,
                extra={"event": "webhook_bad_answer", "job_id": job.id},
            )
            raise WebhookError(f"no valid HTTP answer from {request.origin}") from None
        if not 200 <= answer.status < 300:
            note = " (redirects are not followed)" if 300 <= answer.status < 400 else ""
            raise WebhookError(f"HTTP {answer.status} from {request.origin}{note}")
        result: dict[str, Any] = {"status": answer.status}
        if request.return_body:
            result["body"] = _decode(answer)
        return result


def make_webhook_handler(
    *,
    allow_hosts: Iterable[str] = (),
    deny_networks: Iterable[str] = (),
    resolver: Resolver | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> Handler:
    """The `webhook` handler under a destination policy (see `netguard`): `allow_hosts`
    (host names, addresses, networks) may be reached although private; `deny_networks`
    are refused even if public or allowed. `resolver` and `tls_context` replace the
    system's (for tests). Its timeout sits above the largest per-request timeout, so the
    request's own deadline fires first and gives the clearer message. A bad entry is a
    start-up error (ConfigError) naming the setting."""
    try:
        policy = DestinationPolicy.from_settings(
            allow_hosts,
            deny_networks,
            allow_setting="WEBHOOK_ALLOW_HOSTS",
            deny_setting="WEBHOOK_DENY_NETWORKS",
        )
    except ValueError as exc:
        raise ConfigError(f"invalid {exc}") from None
    sender = WebhookSender(policy, resolver or system_resolver, tls_context)

    def webhook(payload: Any, job: JobContext) -> dict[str, Any]:
        """POST the payload's `body` to its `url`; a non-2xx answer fails the attempt."""
        return sender.send(parse_webhook_payload(payload), job)

    return Handler("webhook", webhook, timeout=HANDLER_TIMEOUT, validate=sender.validate)
