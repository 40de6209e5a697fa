"""The Python client of the WorkStream HTTP API (SPEC sections 4 and 8); the CLI is built on it.

Standard library only: user programs import this to submit jobs, and a queue client should not
drag web frameworks or HTTP libraries into them. Each request opens its own connection, so a
`Client` holds no per-request state and may be shared between threads.

Errors follow one rule: an answer outside 2xx raises `ApiError` (or a subclass for the statuses
callers branch on), carrying the API's stable `code`; a transport failure raises
`ServerUnreachable`. Both are `WorkStreamError`s, so the CLI can map every failure by `code`.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import math
import re
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit, urlunsplit

from workstream.errors import WorkStreamError

__all__ = [
    "ApiError",
    "Client",
    "NotFoundError",
    "QueueFullError",
    "ServerUnreachable",
    "UnauthorizedError",
    "WaitTimeout",
]

DEFAULT_URL = "http://127.0.0.1:8080"

# Annotations inside `Client` cannot say `list[...]`: the `list` method shadows the builtin there.
_JobDict = dict[str, Any]
_JobList = list[dict[str, Any]]

_MAX_POLL_INTERVAL = 1.0  # wait() backs off to this: snappy for short jobs, gentle on long ones
_POLL_BACKOFF = 1.5
_MIN_POLL_TIMEOUT = 0.1  # lets the last poll before a wait deadline still get an answer
_TRANSIENT_STATUSES = frozenset({502, 503, 504})  # draining, restarting, or a proxy in between


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

    def __init__(self, job_id: str, job: _JobDict | None, timeout: float, reason: str) -> None:
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


class Client:
    """A WorkStream server at `url`, optionally behind a path prefix (`https://host/ws`).

    `token` is sent as `Authorization: Bearer <token>` on every request. `timeout` bounds each
    network step (connect, send, every read) of a request, so no call hangs on a dead server.
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0):
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"WorkStream URL must be http://HOST[:PORT] or https://…, got {url!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(
                f"WorkStream URL must not have credentials, query or fragment: {url!r}"
            )
        port = parts.port  # raises ValueError for a bad port
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._origin = (parts.scheme, parts.netloc)
        self._prefix = parts.path.rstrip("/")
        self.url = urlunsplit((parts.scheme, parts.netloc, self._prefix, "", ""))
        self.token = token or None
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- jobs ------------------------------------------------------------------------------

    def submit(
        self,
        type: str,
        payload: Any = None,
        *,
        max_retries: int | None = None,
        delay: float | str | timedelta | None = None,
        run_at: str | datetime | None = None,
        idempotency_key: str | None = None,
    ) -> _JobDict:
        """Submit one job; returns it as accepted (`pending`).

        With `idempotency_key`, sending the same submission again (say after a timeout) returns
        the job stored first instead of a second one. `delay` is seconds, a timedelta or a
        duration string ("2s"); `run_at` an RFC 3339 string or an aware datetime.
        """
        job = _job_body(
            {
                "type": type,
                "payload": payload,
                "max_retries": max_retries,
                "delay": delay,
                "run_at": run_at,
            }
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        _, _, body = self._call("POST", "/jobs", json_body=job, headers=headers)
        return body

    def submit_many(self, jobs: Iterable[_JobDict]) -> _JobList:
        """Submit jobs all or nothing, in one transaction; returns them in order. Each dict is
        shaped like `submit`'s arguments (`type`, `payload`, `max_retries`, `delay`, `run_at`)."""
        batch = [_job_body(job) for job in jobs]
        _, _, body = self._call("POST", "/jobs/batch", json_body={"jobs": batch})
        return body

    def get(self, job_id: str) -> _JobDict:
        """The whole job; `NotFoundError` if there is none with this id."""
        return self._call("GET", _job_path(job_id))[2]

    def list(
        self, *, status: str | None = None, type: str | None = None, limit: int | None = None
    ) -> _JobList:
        """One page of jobs, oldest first (the server's default page is 100). For all matching
        jobs use `iter_jobs`."""
        return self._call("GET", "/jobs", query=_filters(status, type, limit))[2]

    def iter_jobs(
        self, *, status: str | None = None, type: str | None = None, page_size: int = 100
    ) -> Iterator[_JobDict]:
        """Every matching job, oldest first, fetched lazily page by page.

        Follows the `Link: <…>; rel="next"` header rather than building cursors, because the
        cursor is opaque: the server alone knows what the next page is.
        """
        target = self._target("/jobs", _filters(status, type, page_size))
        seen = {target}
        while True:
            status_code, headers, page = self._call("GET", target=target)
            yield from page
            link = _next_link(headers.get_all("Link") or [])
            if link is None:
                return
            target = self._follow(link, target, status_code)
            if target in seen:  # a server bug must not turn `workstream jobs` into a hang
                raise ApiError(
                    status_code, "invalid_response", f"{self.url} sent a next-page link in a loop"
                )
            seen.add(target)

    def cancel(self, job_id: str) -> _JobDict:
        """Cancel a `pending` or `failed` job; 409 (`ApiError`, code `invalid_state`) otherwise."""
        return self._call("POST", _job_path(job_id) + "/cancel", json_body={})[2]

    def retry(self, job_id: str) -> _JobDict:
        """Re-queue a job that failed, with a fresh budget of runs; 409 otherwise."""
        return self._call("POST", _job_path(job_id) + "/retry", json_body={})[2]

    # -- service ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The health body. A 503 (draining, or a core part down) is an answer, not an error:
        the caller wants to see `status` either way."""
        return self._call("GET", "/health", ok_statuses=(503,))[2]

    def metrics(self) -> dict[str, Any]:
        """The counters and gauges as JSON (the server's Prometheus text is for scrapers)."""
        return self._call("GET", "/metrics")[2]

    def wait(
        self,
        job_id: str,
        timeout: float | None = 60.0,
        *,
        poll_interval: float = 0.2,
        on_progress: Callable[[_JobDict, float], object] | None = None,
    ) -> _JobDict:
        """Poll the job until it is finished and return it.

        Finished means `completed`, `cancelled`, or `failed` with `run_at` null: a failed job
        with a `run_at` is waiting for its next attempt, so waiting goes on. `on_progress(job,
        elapsed_seconds)` is called after every successful poll, the last one included. The
        interval grows from `poll_interval` to about a second. Unreachable server and 502/503/
        504 answers are retried (a restart should not abort a wait); other errors raise at once.
        Raises `WaitTimeout` once `timeout` seconds have passed (None: wait for ever).
        """
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        path = _job_path(job_id)
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        interval = poll_interval
        job: _JobDict | None = None
        while True:
            request_timeout = self.timeout
            if deadline is not None:
                left = deadline - time.monotonic()
                request_timeout = min(request_timeout, max(left, _MIN_POLL_TIMEOUT))
            error: WorkStreamError | None = None
            pause = interval
            try:
                job = self._call("GET", path, timeout=request_timeout)[2]
            except ServerUnreachable as exc:
                error = exc
            except ApiError as exc:
                if exc.status not in _TRANSIENT_STATUSES:
                    raise
                error = exc
                pause = max(pause, exc.retry_after or 0)
            else:
                if on_progress is not None:
                    on_progress(job, time.monotonic() - start)
                if _is_finished(job):
                    return job
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(
                        job_id, job, timeout or 0.0, _stall_reason(job, error)
                    ) from error
                pause = min(pause, left)
            time.sleep(pause)
            interval = min(interval * _POLL_BACKOFF, max(_MAX_POLL_INTERVAL, poll_interval))

    # -- transport -------------------------------------------------------------------------

    def _target(self, path: str, query: dict[str, Any] | None = None) -> str:
        target = self._prefix + path
        return f"{target}?{urlencode(query)}" if query else target

    def _follow(self, link: str, current: str, status: int) -> str:
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

    def _call(
        self,
        method: str,
        path: str = "",
        *,
        query: dict[str, Any] | None = None,
        target: str | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> tuple[int, http.client.HTTPMessage, Any]:
        """Send one request; return (status, headers, parsed JSON body) or raise."""
        if target is None:
            target = self._target(path, query)
        request_headers = {"Accept": "application/json", "User-Agent": "workstream-client"}
        if self.token is not None:
            request_headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if json_body is not None:
            # allow_nan=False: NaN/Infinity are not JSON, and the server would refuse them.
            data = json.dumps(json_body, ensure_ascii=False, allow_nan=False).encode()
            request_headers["Content-Type"] = "application/json"
        request_headers.update(headers or {})
        status, reason, response_headers, raw = self._send(
            method, target, data, request_headers, self.timeout if timeout is None else timeout
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
        raise _api_error(status, reason, response_headers, raw)

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


# -- helpers -------------------------------------------------------------------------------


def _job_path(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id.strip():
        raise ValueError(f"job id must be a non-empty string, got {job_id!r}")
    return "/jobs/" + quote(job_id, safe="")


def _filters(status: str | None, type: str | None, limit: int | None) -> dict[str, Any]:
    query = {"status": status, "type": type, "limit": limit}
    return {name: str(value) for name, value in query.items() if value is not None}


def _job_body(job: dict[str, Any]) -> dict[str, Any]:
    """A submission in the API's shape: None fields left out (the server's defaults apply),
    a timedelta `delay` as seconds, a datetime `run_at` as RFC 3339 UTC."""
    if not isinstance(job, dict):
        raise TypeError(f"a job must be a dict, got {type(job).__name__}")
    body = {name: value for name, value in job.items() if value is not None}
    if isinstance(body.get("delay"), timedelta):
        body["delay"] = body["delay"].total_seconds()
    if isinstance(body.get("run_at"), datetime):
        run_at = body["run_at"]
        if run_at.utcoffset() is None:
            raise ValueError("run_at must be timezone-aware (a naive datetime is ambiguous)")
        body["run_at"] = run_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return body


def _stall_reason(job: _JobDict | None, error: Exception | None) -> str:
    if error is not None:
        return f"last error: {error}"
    return f"last seen {job.get('status')!r}" if job is not None else "no answer"


def _is_finished(job: _JobDict) -> bool:
    status = job.get("status")
    if status == "failed":
        return job.get("run_at") is None  # with a run_at, the next attempt is scheduled
    return status in ("completed", "cancelled")


def _api_error(status: int, reason: str, headers: http.client.HTTPMessage, raw: bytes) -> ApiError:
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


_LINK_TARGET = re.compile(r"[\s,]*<([^>]*)>")
_LINK_PARAM = re.compile(
    r"""\s*;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;,"]*))?"""
)


def _parse_links(values: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """Parse `Link` header values (RFC 8288) into (URL, params). URLs and quoted values may hold
    commas and semicolons, so this scans rather than splits. A malformed rest is ignored."""
    links = []
    for text in values:
        pos = 0
        while target := _LINK_TARGET.match(text, pos):
            params: dict[str, str] = {}
            pos = target.end()
            while param := _LINK_PARAM.match(text, pos):
                value = param.group(2) or ""
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                params.setdefault(param.group(1).lower(), value)  # RFC 8288: first one counts
                pos = param.end()
            links.append((target.group(1).strip(), params))
    return links


def _next_link(values: Iterable[str]) -> str | None:
    for url, params in _parse_links(values):
        if "next" in params.get("rel", "").lower().split():
            return url
    return None
