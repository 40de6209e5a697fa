"""The client's HTTP transport: one WorkStream server's URL, and one request at a time.

Standard library only (`http.client`). Each request opens its own connection and closes it,
so a `Transport` holds no per-request state and may be shared between threads. Every
network step (connect, send, each read) is bounded by the request's timeout.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from workstream.client.errors import ApiError, ServerUnreachable, api_error


class Transport:
    """The server at `url`, optionally behind a path prefix (`https://host/ws`). Raises
    ValueError for a URL that is not `http(s)://HOST[:PORT][/PREFIX]`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"WorkStream URL must be http://HOST[:PORT] or https://…, got {url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(
                f"WorkStream URL must not have credentials, query or fragment: {url!r}"
            )
        port = parts.port  # raises ValueError for a bad port
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._origin = (parts.scheme, parts.netloc)
        self._prefix = parts.path.rstrip("/")
        self.url = urlunsplit((parts.scheme, parts.netloc, self._prefix, "", ""))

    def target(self, path: str, query: dict[str, Any] | None = None) -> str:
        """The request target of an API path (the URL's prefix added), with its query."""
        target = self._prefix + path
        return f"{target}?{urlencode(query)}" if query else target

    def follow(self, link: str, current: str, status: int) -> str:
        """The request target of a `Link` URL, resolved against the page that sent it. Links to
        another origin are refused: the token must never go anywhere but `self.url`."""
        path, _, query = current.partition("?")
        base = urlunsplit((*self._origin, path, query, ""))
        parts = urlsplit(urljoin(base, link))
        if (parts.scheme, parts.netloc) != self._origin:
            raise ApiError(
                status,
                "invalid_response",
                f"{self.url} sent a next-page link to another server: {link}",
            )
        return f"{parts.path}?{parts.query}" if parts.query else parts.path

    def call(
        self,
        method: str,
        target: str,
        *,
        token: str | None,
        timeout: float,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> tuple[int, http.client.HTTPMessage, Any]:
        """Send one request; return (status, headers, parsed JSON body) or raise."""
        request_headers = {"Accept": "application/json", "User-Agent": "workstream-client"}
        if token is not None:
            request_headers["Authorization"] = f"Bearer {token}"
        data = None
        if json_body is not None:
            # allow_nan=False: NaN/Infinity are not JSON, and the server would refuse them.
            data = json.dumps(json_body, ensure_ascii=False, allow_nan=False).encode()
            request_headers["Content-Type"] = "application/json"
        request_headers.update(headers or {})
        status, reason, response_headers, raw = self._send(
            method, target, data, request_headers, timeout
        )
        if 200 <= status < 300 or status in ok_statuses:
            try:
                return status, response_headers, json.loads(raw)
            except ValueError:
                raise ApiError(
                    status,
                    "invalid_response",
                    f"{self.url} answered {method} {target} with a body that is not JSON; "
                    "is it a WorkStream server?",
                    raw.decode("utf-8", "replace"),
                ) from None
        raise api_error(status, reason, response_headers, raw)

    def _send(
        self,
        method: str,
        target: str,
        data: bytes | None,
        headers: dict[str, str],
        timeout: float,
    ) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.reason, response.headers, response.read()
        except TimeoutError as exc:
            outcome = "" if method == "GET" else "; the request may or may not have taken effect"
            raise ServerUnreachable(
                f"WorkStream at {self.url} did not answer within {timeout:g}s{outcome}"
            ) from exc
        except ConnectionRefusedError as exc:
            raise ServerUnreachable(
                f"cannot reach WorkStream at {self.url}: connection refused (is it running?)"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ServerUnreachable(f"cannot reach WorkStream at {self.url}: {detail}") from exc
        finally:
            connection.close()
