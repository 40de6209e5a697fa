"""The `Client` of the WorkStream HTTP API (SPEC sections 4 and 8): one method per operation.

The transport (`transport.py`), the errors (`errors.py`), `Link` headers (`links.py`) and the
polling of `wait` (`waiting.py`) live beside it; `workstream.client` exports the public names.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from workstream.client.errors import ApiError
from workstream.client.links import next_link
from workstream.client.transport import Transport
from workstream.client.waiting import poll_timeout, wait_for

DEFAULT_URL = "http://127.0.0.1:8080"

# Annotations inside `Client` cannot say `list[...]`: the `list` method shadows the builtin there.
_JobDict = dict[str, Any]
_JobList = list[dict[str, Any]]


class Client:
    """A WorkStream server at `url`, optionally behind a path prefix (`https://host/ws`).

    `token` is sent as `Authorization: Bearer <token>` on every request. `timeout` bounds each
    network step (connect, send, every read) of a request, so no call hangs on a dead server.
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0):
        self._transport = Transport(url)  # raises ValueError for a URL it cannot use
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = self._transport.url
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
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        **filters: Any,
    ) -> _JobList:
        """One page of jobs, newest first (the server's default page is 100). Takes the
        filters of `page`. For all matching jobs use `iter_jobs`."""
        return self.page(status=status, type=type, limit=limit, **filters).jobs

    def page(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        order: str | None = None,
        cursor: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        id_prefix: str | None = None,
        idempotency_key: str | None = None,
        error: str | None = None,
    ) -> Page:
        """One page of jobs and the cursor of the next (None when no more match).

        `order` is "newest" (the default) or "oldest"; `created_after` (inclusive) and
        `created_before` (exclusive) are aware datetimes or RFC 3339 text; `id_prefix` the
        start of an id; `error` text found in the last error, case-insensitively (3
        characters or more). Pass `cursor` (from a previous page) with the same filters.
        """
        query = _filters(
            status,
            type,
            limit,
            order=order,
            cursor=cursor,
            created_after=_moment(created_after, "created_after"),
            created_before=_moment(created_before, "created_before"),
            id_prefix=id_prefix,
            idempotency_key=idempotency_key,
            error=error,
        )
        _, headers, jobs = self._call("GET", "/jobs", query=query)
        link = next_link(headers.get_all("Link") or [])
        return Page(jobs, _cursor_of(link))

    def iter_jobs(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 100,
        **filters: Any,
    ) -> Iterator[_JobDict]:
        """Every matching job, newest first (or `order="oldest"`), fetched lazily page by
        page. Takes the filters of `page`.

        Follows the `Link: <…>; rel="next"` header rather than building cursors, because the
        cursor is opaque: the server alone knows what the next page is.
        """
        for name in ("created_after", "created_before"):
            if name in filters:
                filters[name] = _moment(filters[name], name)
        target = self._transport.target("/jobs", _filters(status, type, page_size, **filters))
        seen = {target}
        while True:
            status_code, headers, page = self._call("GET", target=target)
            yield from page
            link = next_link(headers.get_all("Link") or [])
            if link is None:
                return
            target = self._transport.follow(link, target, status_code)
            if target in seen:  # a server bug must not turn `workstream jobs` into a hang
                raise ApiError(
                    status_code, "invalid_response", f"{self.url} sent a next-page link in a loop"
                )
            seen.add(target)

    def attempts(self, job_id: str) -> _JobList:
        """The job's attempts, oldest first: number, outcome, times, node, worker, error,
        error class and traceback. `NotFoundError` if there is no such job."""
        return self._call("GET", _job_path(job_id) + "/attempts")[2]

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

        def fetch(left: float | None) -> _JobDict:
            return self._call("GET", path, timeout=poll_timeout(self.timeout, left))[2]

        return wait_for(job_id, fetch, timeout, poll_interval, on_progress)

    # -- transport -------------------------------------------------------------------------

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
        """Send one request with this client's token and timeout; return (status, headers,
        parsed JSON body) or raise."""
        if target is None:
            target = self._transport.target(path, query)
        return self._transport.call(
            method,
            target,
            token=self.token,
            timeout=self.timeout if timeout is None else timeout,
            json_body=json_body,
            headers=headers,
            ok_statuses=ok_statuses,
        )


# -- helpers -------------------------------------------------------------------------------


def _job_path(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id.strip():
        raise ValueError(f"job id must be a non-empty string, got {job_id!r}")
    return "/jobs/" + quote(job_id, safe="")


def _filters(
    status: str | None, type: str | None, limit: int | None, **more: Any
) -> dict[str, Any]:
    unknown = sorted(set(more) - _FILTERS)
    if unknown:
        raise TypeError(f"unknown job filter(s): {', '.join(unknown)}")
    query = {"status": status, "type": type, "limit": limit, **more}
    return {name: str(value) for name, value in query.items() if value is not None}


_FILTERS = {
    "order",
    "cursor",
    "created_after",
    "created_before",
    "id_prefix",
    "idempotency_key",
    "error",
}


@dataclass(frozen=True)
class Page:
    """One page of `GET /jobs`: the jobs, and the cursor of the next page (None: no more)."""

    jobs: list[dict[str, Any]]
    next_cursor: str | None

    @property
    def more(self) -> bool:
        return self.next_cursor is not None


def _cursor_of(link: str | None) -> str | None:
    if link is None:
        return None
    values = parse_qs(urlsplit(link).query).get("cursor")
    return values[-1] if values else None


def _moment(value: datetime | str | None, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (a naive datetime is ambiguous)")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
