"""The Falcon application: routes, middleware and error handling around a `JobService`.

`create_app` is the only way in. It takes the service and the two HTTP-level settings it
needs; everything else (threads, limits of the server) belongs to `server.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import falcon

from workstream.http.body import MAX_BODY_BYTES
from workstream.http.errors import register_error_handlers
from workstream.http.middleware import RequestIdMiddleware, TokenAuthMiddleware
from workstream.http.openapi import openapi_document
from workstream.http.resources import (
    HealthResource,
    JobActionResource,
    JobBatchResource,
    JobResource,
    JobsResource,
    MetricsResource,
    OpenApiResource,
)
from workstream.jobs.service import JobService


def create_app(
    service: JobService,
    *,
    api_token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    routes: Sequence[tuple[str, object]] = (),
) -> falcon.App:
    """The WSGI application of the API in SPEC section 4.

    With `api_token`, every route but `GET /health` requires `Authorization: Bearer
    <api_token>`. `max_body_bytes` bounds request bodies (413 past it). `routes` are
    extensions' resources (under `/ext/<name>`), served with the same middleware and
    error handling as the API.
    """
    middleware: list[object] = [RequestIdMiddleware()]
    if api_token:
        middleware.append(TokenAuthMiddleware(api_token))
    app = falcon.App(middleware=middleware)
    register_error_handlers(app)

    app.add_route("/jobs", JobsResource(service, max_body_bytes=max_body_bytes))
    app.add_route("/jobs/batch", JobBatchResource(service, max_body_bytes=max_body_bytes))
    app.add_route("/jobs/{job_id}", JobResource(service))
    app.add_route(
        "/jobs/{job_id}/cancel", JobActionResource(service.cancel, max_body_bytes=max_body_bytes)
    )
    app.add_route(
        "/jobs/{job_id}/retry", JobActionResource(service.retry, max_body_bytes=max_body_bytes)
    )
    app.add_route("/metrics", MetricsResource(service))
    app.add_route("/health", HealthResource(service))
    app.add_route("/openapi.json", OpenApiResource(openapi_document()))
    for path, resource in routes:
        app.add_route(path, resource)
    return app
