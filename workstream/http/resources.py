"""The resources behind each route. Each one only parses the request (helpers in `body`,
`query`, `submissions`, `idempotency`), calls the `JobService`, and renders the answer;
errors are raised as `WorkStreamError`s and mapped to responses in `errors.py`."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

import falcon

from workstream.errors import InvalidRequest
from workstream.http import idempotency
from workstream.http.body import MAX_BODY_BYTES, read_json_body, read_no_input
from workstream.http.query import next_page_link, parse_list_query
from workstream.http.render import JSON, render_json, send_json
from workstream.http.submissions import parse_batch, parse_single
from workstream.jobs.model import Job
from workstream.jobs.service import JobService

Clock = Callable[[], float]

# At most this many attempts (the latest) in one answer: each carries up to 16 KiB of
# traceback, so a job retried by hand again and again still gets a bounded answer.
MAX_ATTEMPTS_SHOWN = 200


def _location(job: Job) -> str:
    return f"/jobs/{quote(job.id, safe='')}"


class JobsResource:
    """`/jobs`: submit one job (optionally idempotent), or list jobs a page at a time."""

    def __init__(
        self, service: JobService, *, max_body_bytes: int = MAX_BODY_BYTES, clock: Clock = time.time
    ) -> None:
        self._service = service
        self._max_body_bytes = max_body_bytes
        self._clock = clock

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        key = idempotency.parse_idempotency_key(req.get_header(idempotency.HEADER))
        body = read_json_body(req, max_bytes=self._max_body_bytes)
        spec = parse_single(body, now=self._clock())
        submission = self._service.submit(
            [spec],
            idempotency_key=key,
            request_hash=idempotency.request_hash(body) if key is not None else None,
        )
        job = submission.jobs[0]
        resp.set_header("Location", _location(job))
        send_json(resp, job.to_public(), 201 if submission.created else 200)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = parse_list_query(req.query_string)
        page = self._service.list(query)
        if page.next_after is not None:
            resp.set_header("Link", next_page_link(query, page.next_after))
        send_json(resp, [job.to_public() for job in page.jobs])


class JobBatchResource:
    """`/jobs/batch`: many jobs in one all-or-nothing submission."""

    def __init__(
        self, service: JobService, *, max_body_bytes: int = MAX_BODY_BYTES, clock: Clock = time.time
    ) -> None:
        self._service = service
        self._max_body_bytes = max_body_bytes
        self._clock = clock

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.get_header(idempotency.HEADER) is not None:
            # Refused rather than ignored, so that nobody believes a retried batch is safe.
            raise InvalidRequest(f"{idempotency.HEADER} is supported on POST /jobs only")
        body = read_json_body(req, max_bytes=self._max_body_bytes)
        specs = parse_batch(body, now=self._clock(), check=self._service.check_job)
        submission = self._service.submit(specs, batch=True, checked=True)
        send_json(resp, [job.to_public() for job in submission.jobs], 201)


class JobResource:
    """`/jobs/{job_id}`: one job."""

    def __init__(self, service: JobService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        send_json(resp, self._service.get(job_id).to_public())


class JobAttemptsResource:
    """`/jobs/{job_id}/attempts`: the job's attempt history, oldest first (the latest
    `MAX_ATTEMPTS_SHOWN`), with errors and tracebacks."""

    def __init__(self, service: JobService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        attempts = self._service.attempts(job_id)[-MAX_ATTEMPTS_SHOWN:]
        send_json(resp, [attempt.to_public() for attempt in attempts])


class JobActionResource:
    """`/jobs/{job_id}/cancel` and `/jobs/{job_id}/retry`: a state change that takes no
    input; `action` is the service method that applies it."""

    def __init__(
        self, action: Callable[[str], Job], *, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self._action = action
        self._max_body_bytes = max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        read_no_input(req, max_bytes=self._max_body_bytes)
        send_json(resp, self._action(job_id).to_public())


class MetricsResource:
    """`/metrics`: Prometheus text by default, the JSON summary when the client prefers it."""

    def __init__(self, service: JobService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_header("Vary", "Accept")
        if req.client_prefers(("text/plain", JSON)) == JSON:
            send_json(resp, self._service.stats())
            return
        content_type, data = self._service.metrics_text()
        resp.content_type = content_type
        resp.data = data


class HealthResource:
    """`/health`: 200 while the service is healthy, 503 otherwise; open without a token.
    HEAD answers the same status and headers, without the body."""

    def __init__(self, service: JobService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        health = self._service.health()
        details = {name: value for name, value in health.details.items() if name != "status"}
        if health.ok:
            send_json(resp, {"status": "ok", **details})
        else:
            send_json(resp, {"status": health.status, **details}, 503)

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.on_get(req, resp)  # the WSGI server sends no body for HEAD


class OpenApiResource:
    """`/openapi.json`: the API description, rendered once."""

    def __init__(self, document: dict) -> None:
        self._data = render_json(document)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = JSON
        resp.data = self._data
