"""The operator's console: HTML pages at `/` and under `/ui/`, served by the API's process.

`mount_console` adds its routes to the Falcon app and returns the middleware that guards
both the API and the console (`security.ConsoleGuard`). See docs/console.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from workstream.errors import WorkStreamError
from workstream.http.console.data import ConsoleData
from workstream.http.console.security import ConsoleGuard, Sessions, is_console_path
from workstream.http.console.views import (
    BulkResource,
    Console,
    FailuresResource,
    JobActionsResource,
    JobResource,
    JobsResource,
    LoginResource,
    LogoutResource,
    OverviewResource,
    ScheduleRunResource,
    StaticResource,
    TypeActionResource,
    TypesResource,
)
from workstream.http.errors import handle_workstream_error
from workstream.http.hosts import HostCheckMiddleware
from workstream.http.middleware import AuthFailureHook
from workstream.jobs.service import JobService

__all__ = ["console_guard", "mount_console"]


def console_guard(
    api_guard: Any,
    *,
    api_token: str | None,
    read_only: bool,
    on_auth_failure: AuthFailureHook | None,
    clock: Callable[[], float],
) -> ConsoleGuard:
    """The middleware that keeps `api_guard` on the API's paths and guards the console's."""
    return ConsoleGuard(
        api_guard,
        Sessions(api_token, clock),
        read_only=read_only,
        host_check=api_guard if isinstance(api_guard, HostCheckMiddleware) else None,
        on_auth_failure=on_auth_failure,
    )


def mount_console(
    app: falcon.App,
    service: JobService,
    guard: ConsoleGuard,
    *,
    api_token: str | None,
    on_auth_failure: AuthFailureHook | None,
    clock: Callable[[], float],
    schedules: Any | None = None,
) -> None:
    """`schedules`: the scheduler's view (a `ScheduleProvider`: `schedules()`,
    `run_schedule(name)`), when the server has one."""
    console = Console(
        data=ConsoleData(service, clock, schedules),
        sessions=guard.sessions,
        token=api_token,
        read_only=guard.read_only,
        on_auth_failure=on_auth_failure,
    )
    overview = OverviewResource(console)
    app.add_route("/", overview)
    app.add_route(
        "/ui/fragments/overview", OverviewResource(console, fragment=True, cache=overview.cache)
    )
    app.add_route("/ui/login", LoginResource(console))
    app.add_route("/ui/logout", LogoutResource(console))
    app.add_route("/ui/static/{name}", StaticResource())
    app.add_route("/ui/jobs", JobsResource(console))
    app.add_route("/ui/jobs/{job_id}", JobResource(console))
    app.add_route("/ui/fragments/jobs/{job_id}", JobResource(console, fragment=True))
    app.add_route("/ui/failures", FailuresResource(console))
    app.add_route("/ui/fragments/failures", FailuresResource(console, fragment=True))
    app.add_route("/ui/types", TypesResource(console))
    app.add_route("/ui/fragments/types", TypesResource(console, fragment=True))
    app.add_route("/ui/actions/jobs", JobActionsResource(console))
    app.add_route("/ui/bulk", BulkResource(console))
    app.add_route("/ui/types/{name}/{action}", TypeActionResource(console))
    app.add_route("/ui/schedules/{name}/run", ScheduleRunResource(console))

    def handle_error(
        req: falcon.Request, resp: falcon.Response, error: WorkStreamError, params: Any
    ) -> None:
        """The API's answer to an error; on a console page a browser opened, the same
        status and message as an HTML page."""
        handle_workstream_error(req, resp, error, params)
        accept = req.get_header("Accept") or ""
        if is_console_path(req.path) and "text/html" in accept and resp.status_code < 500:
            console.render(req, resp, "error.html", status=resp.status_code, message=error.message)

    app.add_error_handler(WorkStreamError, handle_error)
