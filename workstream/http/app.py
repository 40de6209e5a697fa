"""The Falcon application: routes, middleware and error handling around a `JobService`.

`create_app` is the only way in. It takes the service and the two HTTP-level settings it
needs; everything else (threads, limits of the server) belongs to `server.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import falcon

from workstream.http.body import MAX_BODY_BYTES
from workstream.http.console import console_guard, mount_console
from workstream.http.errors import register_error_handlers
from workstream.http.hosts import HostCheckMiddleware
from workstream.http.middleware import (
    AuthFailureHook,
    RequestIdMiddleware,
    TokenAuthMiddleware,
)
from workstream.http.openapi import openapi_document
from workstream.http.resources import (
    HealthResource,
    JobActionResource,
    JobAttemptsResource,
    JobBatchResource,
    JobResource,
    JobsResource,
    MetricsResource,
    OpenApiResource,
    TypeActionResource,
    TypesResource,
)
from workstream.http.schedules import NoSchedules, ScheduleRunResource, SchedulesResource
from workstream.jobs.schedules import ScheduleProvider
from workstream.jobs.service import JobService


def create_app(
    service: JobService,
    *,
    api_token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    routes: Sequence[tuple[str, object]] = (),
    on_auth_failure: AuthFailureHook | None = None,
    host: str | None = None,
    clock: Callable[[], float] = time.time,
    schedules: ScheduleProvider | None = None,
    console: bool = False,
    console_read_only: bool = False,
) -> falcon.App:
    """The WSGI application of the API in SPEC section 4.

    With `api_token`, every route but `/health` (GET, HEAD) requires `Authorization:
    Bearer <api_token>`; each refusal is logged and reported to `on_auth_failure`.
    Without it, only requests addressed to this machine are served (`Host` must be
    `host`, localhost or a loopback address, and a state-changing request's `Origin`, if
    any, one of them too), so that a web page cannot reach the API through DNS rebinding
    (see `HostCheckMiddleware`). `max_body_bytes` bounds request bodies (413 past it).
    `routes` are extensions' resources (under `/ext/<name>`), served with the same
    middleware and error handling as the API. `clock` dates the API description (the
    bound of `run_at`). `schedules` is the scheduler's view: `GET /schedules` and
    `POST /schedules/{name}/run` (absent: no schedules). With `console`, the operator's
    console is served at `/` and under `/ui/` (`workstream.http.console`, docs/console.md;
    read-only with `console_read_only`).
    """
    guard: Any = (
        TokenAuthMiddleware(api_token, on_failure=on_auth_failure)
        if api_token
        else HostCheckMiddleware(host)
    )
    console_middleware = None
    if console:
        guard = console_middleware = console_guard(
            guard,
            api_token=api_token,
            read_only=console_read_only,
            on_auth_failure=on_auth_failure,
            clock=clock,
        )
    app = falcon.App(middleware=[RequestIdMiddleware(), guard])
    register_error_handlers(app)

    app.add_route("/jobs", JobsResource(service, max_body_bytes=max_body_bytes))
    app.add_route("/jobs/batch", JobBatchResource(service, max_body_bytes=max_body_bytes))
    app.add_route("/jobs/{job_id}", JobResource(service))
    app.add_route("/jobs/{job_id}/attempts", JobAttemptsResource(service))
    app.add_route(
        "/jobs/{job_id}/cancel", JobActionResource(service.cancel, max_body_bytes=max_body_bytes)
    )
    app.add_route(
        "/jobs/{job_id}/retry", JobActionResource(service.retry, max_body_bytes=max_body_bytes)
    )
    app.add_route("/types", TypesResource(service))
    app.add_route(
        "/types/{name}/pause",
        TypeActionResource(service.pause_type, max_body_bytes=max_body_bytes),
    )
    app.add_route(
        "/types/{name}/resume",
        TypeActionResource(service.resume_type, max_body_bytes=max_body_bytes),
    )
    app.add_route("/metrics", MetricsResource(service))
    app.add_route("/health", HealthResource(service))
    provider = schedules or NoSchedules()
    app.add_route("/schedules", SchedulesResource(provider))
    app.add_route("/schedules/{name}/run", ScheduleRunResource(provider))
    document = openapi_document(service.job_types(), now=clock())
    app.add_route("/openapi.json", OpenApiResource(document))
    for path, resource in routes:
        app.add_route(path, resource)
    if console_middleware is not None:
        mount_console(
            app,
            service,
            console_middleware,
            api_token=api_token,
            on_auth_failure=on_auth_failure,
            clock=clock,
            schedules=schedules,
        )
    return app
