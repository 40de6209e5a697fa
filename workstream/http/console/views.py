"""The console's pages, fragments and actions (Falcon resources).

Pages are whole HTML documents; each live part of a page is also served alone as a
fragment (`/ui/fragments/...`), which htmx polls every few seconds and swaps in place.
Actions are plain HTML form POSTs (CSRF token in a hidden field) answered by a redirect or
a result page, so that they work the same with or without htmx; only the steps of a bulk
action chain themselves through htmx (`hx-trigger="load"`), with a button as fallback.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import falcon

from workstream.errors import InvalidRequest, NotFound
from workstream.http.console.data import BATCH_SIZE, PAGE_SIZE, ConsoleData, Filters
from workstream.http.console.render import environment
from workstream.http.console.security import (
    Session,
    Sessions,
    clear_session_cookie,
    form_of,
    set_session_cookie,
)
from workstream.http.middleware import AuthFailureHook, request_id_of
from workstream.http.query import decode_cursor, encode_cursor
from workstream.jobs.listing import Position
from workstream.jobs.model import JobStatus

logger = logging.getLogger("workstream.console")

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".LICENSE": "text/plain; charset=utf-8",
}
OVERVIEW_TTL = 5.0  # seconds the overview's figures are reused, whoever polls
MAX_SELECTED = 1000  # job ids one "selected" action takes
ACTIONS = ("retry", "cancel")


@dataclass
class Console:
    """What every console resource shares."""

    data: ConsoleData
    sessions: Sessions
    token: str | None
    read_only: bool
    on_auth_failure: AuthFailureHook | None = None

    def __post_init__(self) -> None:
        self.env = environment()

    def render(
        self, req: falcon.Request, resp: falcon.Response, template: str, **values: Any
    ) -> None:
        session: Session | None = getattr(req.context, "console_session", None)
        resp.content_type = falcon.MEDIA_HTML
        resp.text = self.env.get_template(template).render(
            csrf=self.sessions.csrf_token(session) if session is not None else "",
            read_only=self.read_only,
            login_required=self.sessions.login_required,
            logged_in=session is not None and not session.anonymous,
            path=req.path,
            now=self.data.clock(),
            has=self.data.has,
            **values,
        )

    def log_action(self, req: falcon.Request, action: str, **what: Any) -> None:
        session: Session | None = getattr(req.context, "console_session", None)
        logger.info(
            "console action: %s",
            action,
            extra={
                "event": "console_action",
                "action": action,
                "who": session.who if session is not None else None,
                "remote_addr": req.remote_addr,
                "request_id": request_id_of(req),
                **what,
            },
        )


def _param(req: falcon.Request, name: str) -> str | None:
    value = req.get_param(name)
    return value if isinstance(value, str) else None


def _form_text(form: dict[str, Any], name: str) -> str:
    value = form.get(name)
    if isinstance(value, list):
        value = value[0] if value else ""
    return value if isinstance(value, str) else ""


def _form_list(form: dict[str, Any], name: str) -> list[str]:
    value = form.get(name)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [item for item in values if isinstance(item, str) and item]


def _local_path(target: str | None, default: str = "/") -> str:
    """A redirect target that stays on this server (no `//host`, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target[:2000]


def _cursor(text: str | None) -> Position | None:
    """The position a `cursor` parameter carries (the API's opaque cursor), or None."""
    return decode_cursor(text) if text else None


def _count_field(text: str, name: str) -> int:
    if not text:
        return 0
    if not text.isdigit() or len(text) > 12:
        raise InvalidRequest(f"{name}: must be a whole number")
    return int(text)


def _live(req: falcon.Request) -> bool:
    return req.get_param("paused") != "1"


# -- login -------------------------------------------------------------------------------


class LoginResource:
    def __init__(self, console: Console) -> None:
        self.console = console

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self.console.sessions.login_required:
            raise falcon.HTTPSeeOther("/")
        self.console.render(
            req, resp, "login.html", next=_local_path(_param(req, "next")), failed=False
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        console = self.console
        if not console.sessions.login_required:
            raise falcon.HTTPSeeOther("/")
        form = form_of(req)
        target = _local_path(_form_text(form, "next"))
        if not console.sessions.check_token(_form_text(form, "token"), console.token):
            logger.warning(
                "console login failed",
                extra={
                    "event": "console_login_failed",
                    "request_id": request_id_of(req),
                    "remote_addr": req.remote_addr,
                },
            )
            if console.on_auth_failure is not None:
                console.on_auth_failure()
            resp.status = falcon.HTTP_401
            console.render(req, resp, "login.html", next=target, failed=True)
            return
        value, session = console.sessions.issue()
        set_session_cookie(req, resp, value)
        req.context.console_session = session
        console.log_action(req, "login", session=session.who)
        raise falcon.HTTPSeeOther(target)


class LogoutResource:
    def __init__(self, console: Console) -> None:
        self.console = console

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.console.log_action(req, "logout")
        clear_session_cookie(req, resp)
        raise falcon.HTTPSeeOther("/ui/login" if self.console.sessions.login_required else "/")


# -- static files ------------------------------------------------------------------------


class StaticResource:
    """The vendored htmx, its license, and the console's stylesheet (a fixed list)."""

    def __init__(self) -> None:
        self.files = {
            path.name: path.read_bytes() for path in STATIC_DIR.iterdir() if path.is_file()
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = self.files.get(name)
        if body is None:
            raise NotFound(f"no static file {name[:80]!r}")
        suffix = Path(name).suffix
        resp.content_type = STATIC_TYPES.get(suffix, "application/octet-stream")
        resp.set_header("Cache-Control", "public, max-age=3600")
        resp.data = body


# -- overview ------------------------------------------------------------------------------


class OverviewCache:
    """The overview's figures, computed at most once per OVERVIEW_TTL seconds whoever asks:
    ten open consoles polling cost the store what one does (counting by status reads the
    whole jobs table)."""

    def __init__(self, compute: Any, clock: Any) -> None:
        self._compute = compute
        self._clock = clock
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._at = 0.0

    def get(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            if self._value is None or not 0 <= now - self._at < OVERVIEW_TTL:
                self._value = self._compute()
                self._at = now
            return self._value


class OverviewResource:
    def __init__(
        self, console: Console, fragment: bool = False, cache: OverviewCache | None = None
    ) -> None:
        self.console = console
        self.fragment = fragment
        self.cache = cache or OverviewCache(self.overview, time.monotonic)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        values = self.cache.get()
        template = "overview_live.html" if self.fragment else "overview.html"
        self.console.render(req, resp, template, live=_live(req), **values)

    def overview(self) -> dict[str, Any]:
        data = self.console.data
        stats = data.stats()
        # Capped, index-backed counts: the /metrics status counts scan every job.
        by_status = {status.value: data.count_status(status.value) for status in JobStatus}
        throughput = data.throughput(60)
        types = data.types()
        peak = max((m.completed + m.failed for m in throughput or ()), default=0)
        return {
            "stats": stats,
            "by_status": by_status,
            "health": data.health(),
            "throughput": throughput,
            "peak": peak,
            "oldest_due": data.oldest_due_age(),
            "types": types,
            "type_names": data.service.job_types(),
        }


# -- jobs --------------------------------------------------------------------------------


class JobsResource:
    def __init__(self, console: Console) -> None:
        self.console = console

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        filters = Filters.parse(req.params)
        after = _cursor(_param(req, "cursor"))
        page = self.console.data.page(filters, after, PAGE_SIZE)
        query = filters.query_items()
        next_url = (
            "/ui/jobs?" + urlencode([*query, ("cursor", encode_cursor(page.next_after))])
            if page.next_after is not None
            else None
        )
        self.console.render(
            req,
            resp,
            "jobs.html",
            filters=filters,
            page=page,
            next_url=next_url,
            first_url="/ui/jobs?" + urlencode(query) if after is not None else None,
            query=urlencode(query),
            statuses=[status.value for status in JobStatus],
            type_names=self.console.data.service.job_types(),
            this_url=req.relative_uri,
        )


class JobResource:
    def __init__(self, console: Console, fragment: bool = False) -> None:
        self.console = console
        self.fragment = fragment

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        data = self.console.data
        job = data.job(job_id)
        attempts = data.attempts(job_id)
        template = "job_live.html" if self.fragment else "job.html"
        self.console.render(
            req,
            resp,
            template,
            job=job,
            attempts=attempts,
            live=_live(req),
            this_url=f"/ui/jobs/{job.id}",
        )


# -- failures and types ------------------------------------------------------------------


class FailuresResource:
    def __init__(self, console: Console, fragment: bool = False) -> None:
        self.console = console
        self.fragment = fragment

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        groups = self.console.data.failure_groups(50)
        template = "failures_live.html" if self.fragment else "failures.html"
        self.console.render(
            req, resp, template, groups=groups, live=_live(req), urlencode=urlencode
        )


class TypesResource:
    def __init__(self, console: Console, fragment: bool = False) -> None:
        self.console = console
        self.fragment = fragment

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = self.console.data
        template = "types_live.html" if self.fragment else "types.html"
        self.console.render(
            req,
            resp,
            template,
            types=data.types(),
            schedules=data.schedules(),
            live=_live(req),
        )


# -- actions -----------------------------------------------------------------------------


class JobActionsResource:
    """POST /ui/actions/jobs: `action` (retry, cancel) on the ids in `id` (one or the
    selected ones)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = form_of(req)
        action = _form_text(form, "action")
        if action not in ACTIONS:
            raise InvalidRequest(f"action: must be one of {', '.join(ACTIONS)}")
        job_ids = _form_list(form, "id")
        if not job_ids:
            raise InvalidRequest("id: select at least one job")
        if len(job_ids) > MAX_SELECTED:
            raise InvalidRequest(f"id: at most {MAX_SELECTED} jobs at once")
        outcome = self.console.data.act(action, job_ids)
        self.console.log_action(
            req,
            action,
            job_ids=job_ids[:100],
            count=len(outcome.done),
            refused=len(outcome.refused),
        )
        back = _local_path(_form_text(form, "next"), "/ui/jobs")
        if len(job_ids) == 1 and not outcome.refused:
            raise falcon.HTTPSeeOther(back)
        self.console.render(req, resp, "result.html", action=action, outcome=outcome, back=back)


class BulkResource:
    """Every job a filter matches: GET counts and asks to confirm; each POST acts on the
    next BATCH_SIZE jobs and answers the progress, with the next step chained."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        action = _param(req, "action")
        if action not in ACTIONS:
            raise InvalidRequest(f"action: must be one of {', '.join(ACTIONS)}")
        filters = _bulk_filters(action, Filters.parse(req.params))
        count = self.console.data.count(filters)
        self.console.render(
            req,
            resp,
            "bulk_confirm.html",
            action=action,
            filters=filters,
            count=count,
            query=urlencode(filters.query_items()),
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = form_of(req)
        action = _form_text(form, "action")
        if action not in ACTIONS:
            raise InvalidRequest(f"action: must be one of {', '.join(ACTIONS)}")
        filters = _bulk_filters(action, Filters.parse(form))
        after = _cursor(_form_text(form, "cursor"))
        done_before = _count_field(_form_text(form, "done_total"), "done_total")
        seen_before = _count_field(_form_text(form, "seen_total"), "seen_total")
        outcome, next_after, seen = self.console.data.act_on_batch(action, filters, after)
        self.console.log_action(
            req,
            f"{action}_matching",
            filter=dict(filters.query_items()),
            count=len(outcome.done),
            refused=len(outcome.refused),
            step_cursor=_form_text(form, "cursor") or None,
        )
        step = {
            "action": action,
            "done_total": done_before + len(outcome.done),
            "seen_total": seen_before + seen,
            "cursor": encode_cursor(next_after) if next_after is not None else "",
            "finished": next_after is None,
            "fields": [*filters.query_items(), ("action", action)],
            "batch": BATCH_SIZE,
        }
        if req.get_header("HX-Request"):
            self.console.render(req, resp, "bulk_step.html", step=step)
        else:
            self.console.render(req, resp, "bulk_progress.html", step=step)


def _bulk_filters(action: str, filters: Filters) -> Filters:
    """A bulk retry looks only at failed jobs (only those can be retried)."""
    if action == "retry" and "status" not in filters.values:
        return Filters({**filters.values, "status": "failed"}, filters.error_class)
    return filters


class TypeActionResource:
    def __init__(self, console: Console) -> None:
        self.console = console

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str, action: str) -> None:
        data = self.console.data
        if action not in ("pause", "resume"):
            raise NotFound(f"no action {action[:40]!r} on a type")
        data.pause_type(name, action == "pause")
        self.console.log_action(req, f"{action}_type", job_type=name)
        raise falcon.HTTPSeeOther("/ui/types")


class ScheduleRunResource:
    def __init__(self, console: Console) -> None:
        self.console = console

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = self.console.data
        if not data.has("run_schedule"):
            raise NotFound("schedules are not available on this server")
        result = data.run_schedule(name)  # the job's id (or the job)
        job_id = result if isinstance(result, str) else getattr(result, "id", None)
        self.console.log_action(req, "run_schedule", schedule=name, job_ids=[job_id])
        raise falcon.HTTPSeeOther(f"/ui/jobs/{quote(job_id)}" if job_id else "/ui/types")
