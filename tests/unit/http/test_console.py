"""The console through falcon.testing: its security (sessions, CSRF, Origin, headers,
read-only mode) and its rendering (escaping, pages, bulk actions), over the fake service."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import falcon
import pytest
from falcon.testing import Result, TestClient

from tests.unit.http.fakes import FakeService
from tests.unit.http.support import LOCAL_HOST
from workstream.http.app import create_app
from workstream.http.console import mount_console
from workstream.http.console.data import BATCH_SIZE
from workstream.http.console.security import (
    CONTENT_SECURITY_POLICY,
    SESSION_COOKIE,
    ConsoleGuard,
    Sessions,
)
from workstream.http.middleware import TokenAuthMiddleware
from workstream.jobs.attempts import Attempt
from workstream.jobs.listing import FailureGroup, MinuteCount
from workstream.jobs.model import JobStatus

TOKEN = "console-test-token-0123456789"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SAME_ORIGIN = {"Origin": f"http://{LOCAL_HOST}", "Sec-Fetch-Site": "same-origin"}


class ConsoleClient:
    """A falcon test client that keeps the console's cookie, as a browser would."""

    def __init__(self, service: FakeService, **options: Any) -> None:
        self.failures: list[int] = []
        options.setdefault("on_auth_failure", lambda: self.failures.append(1))
        self.client = TestClient(
            create_app(service, console=True, **options), headers={"Host": LOCAL_HOST}
        )
        self.cookie: str | None = None

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        if self.cookie is not None:
            out["Cookie"] = f"{SESSION_COOKIE}={self.cookie}"
        return out

    def _keep(self, result: Result) -> Result:
        if SESSION_COOKIE in result.cookies:
            self.cookie = result.cookies[SESSION_COOKIE].value or None
        return result

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Result:
        return self._keep(self.client.simulate_get(path, headers=self._headers(headers), **kw))

    def post(
        self,
        path: str,
        form: dict[str, Any] | list[tuple[str, str]],
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> Result:
        body = urlencode(form, doseq=True)
        merged = {**FORM, **SAME_ORIGIN, **(headers or {})}
        return self._keep(
            self.client.simulate_post(path, body=body, headers=self._headers(merged), **kw)
        )

    def login(self) -> None:
        result = self.post("/ui/login", {"token": TOKEN, "next": "/"})
        assert result.status_code == 303, result.text

    def csrf(self, path: str = "/ui/jobs") -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', self.get(path).text)
        assert match, "no CSRF field on the page"
        return match.group(1)


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def console(service: FakeService) -> ConsoleClient:
    return ConsoleClient(service, api_token=TOKEN)


# -- sessions and login --------------------------------------------------------------------


def test_pages_redirect_to_the_login_form_without_a_session(console: ConsoleClient) -> None:
    result = console.get("/ui/jobs?status=failed")
    assert result.status_code == 303
    assert result.headers["location"] == "/ui/login?next=%2Fui%2Fjobs%3Fstatus%3Dfailed"
    fragment = console.get("/ui/fragments/overview", headers={"HX-Request": "true"})
    assert fragment.status_code == 401
    assert fragment.headers["hx-redirect"] == "/ui/login"


def test_login_sets_a_strict_httponly_cookie_that_is_not_the_token(
    console: ConsoleClient,
) -> None:
    result = console.post("/ui/login", {"token": TOKEN, "next": "/ui/failures"})
    assert result.status_code == 303
    assert result.headers["location"] == "/ui/failures"
    cookie = result.cookies[SESSION_COOKIE]
    assert cookie.http_only and cookie.same_site == "Strict" and cookie.path == "/"
    assert not cookie.secure  # plain http here; see the https test
    assert TOKEN not in cookie.value
    assert console.get("/").status_code == 200


def test_the_cookie_is_secure_on_https(service: FakeService) -> None:
    console = ConsoleClient(service, api_token=TOKEN)
    result = console.post("/ui/login", {"token": TOKEN}, protocol="https")
    assert result.cookies[SESSION_COOKIE].secure
    proxied = console.post("/ui/login", {"token": TOKEN}, headers={"X-Forwarded-Proto": "https"})
    assert proxied.cookies[SESSION_COOKIE].secure


def test_a_wrong_token_is_refused_and_counted(console: ConsoleClient) -> None:
    result = console.post("/ui/login", {"token": "wrong-token-wrong-token"})
    assert result.status_code == 401
    assert SESSION_COOKIE not in result.cookies
    assert "not this server" in result.text
    assert console.failures == [1]
    assert console.get("/").status_code == 303


def test_a_tampered_or_foreign_cookie_is_no_session(
    console: ConsoleClient, service: FakeService
) -> None:
    console.login()
    assert console.cookie is not None
    session_id, issued, mac = console.cookie.split(".")
    console.cookie = f"{session_id}x.{issued}.{mac}"
    assert console.get("/").status_code == 303
    other = ConsoleClient(service, api_token=TOKEN + "-other")
    assert other.post("/ui/login", {"token": TOKEN + "-other"}).status_code == 303
    console.cookie = other.cookie
    assert console.get("/").status_code == 303


def test_login_never_redirects_off_this_server(console: ConsoleClient) -> None:
    for target in ("//evil.example/", "https://evil.example/", "\\\\evil"):
        result = console.post("/ui/login", {"token": TOKEN, "next": target})
        assert result.headers["location"] == "/"


def test_the_cookie_does_not_open_the_api_and_the_bearer_token_still_does(
    console: ConsoleClient, service: FakeService
) -> None:
    console.login()
    assert console.get("/jobs").status_code == 401
    bearer = console.client.simulate_get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200


def test_logout_ends_the_session_in_the_browser(console: ConsoleClient) -> None:
    console.login()
    result = console.post("/ui/logout", {"csrf": console.csrf()})
    assert result.status_code == 303
    assert console.cookie is None
    assert console.get("/").status_code == 303


# -- state-changing requests ---------------------------------------------------------------


def _failed(service: FakeService, **changes: Any) -> str:
    return service.add_job(
        status=JobStatus.FAILED, run_at=None, attempts=1, last_error="RuntimeError: x", **changes
    ).id


def test_an_action_needs_the_csrf_token(console: ConsoleClient, service: FakeService) -> None:
    console.login()
    job_id = _failed(service)
    form = {"action": "retry", "id": job_id}
    for token in (None, "0" * 64):
        sent = form if token is None else {**form, "csrf": token}
        result = console.post("/ui/actions/jobs", sent, headers={"Accept": "application/json"})
        assert result.status_code == 403
        assert result.json == {"error": "missing or wrong CSRF token", "code": "forbidden"}
    assert service.job(job_id).status is JobStatus.FAILED
    result = console.post("/ui/actions/jobs", {**form, "csrf": console.csrf(), "next": "/x"})
    assert result.status_code == 303 and result.headers["location"] == "/x"
    assert service.job(job_id).status is JobStatus.PENDING


def test_the_csrf_token_also_comes_as_the_htmx_header(
    console: ConsoleClient, service: FakeService
) -> None:
    console.login()
    job_id = _failed(service)
    result = console.post(
        "/ui/actions/jobs",
        {"action": "retry", "id": job_id},
        headers={"X-CSRF-Token": console.csrf(), "HX-Request": "true"},
    )
    assert result.status_code == 303


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://{LOCAL_HOST}.evil.example"},
        {"Sec-Fetch-Site": "cross-site", "Origin": f"http://{LOCAL_HOST}"},
        {"Sec-Fetch-Site": "same-site", "Origin": f"http://{LOCAL_HOST}"},
    ],
)
def test_a_cross_origin_action_is_refused(
    console: ConsoleClient, service: FakeService, headers: dict[str, str]
) -> None:
    console.login()
    job_id = _failed(service)
    form = {"action": "retry", "id": job_id, "csrf": console.csrf()}
    result = console.post("/ui/actions/jobs", form, headers=headers)
    assert result.status_code == 403
    assert result.json["code"] == "forbidden"
    html = console.post("/ui/actions/jobs", form, headers={**headers, "Accept": "text/html"})
    assert html.status_code == 403 and "refused" in html.text
    assert html.headers["content-type"].startswith("text/html")
    assert service.job(job_id).status is JobStatus.FAILED


def test_read_only_mode_hides_and_refuses_actions(service: FakeService) -> None:
    console = ConsoleClient(service, api_token=TOKEN, console_read_only=True)
    console.login()
    job_id = _failed(service)
    page = console.get(f"/ui/jobs/{job_id}")
    assert "retry-job" not in page.text and "read-only" in page.text
    assert 'name="action"' not in console.get("/ui/jobs").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None  # the logout form
    result = console.post(
        "/ui/actions/jobs",
        {"action": "retry", "id": job_id, "csrf": csrf.group(1)},
        headers={"Accept": "application/json"},
    )
    assert result.status_code == 403 and result.json["code"] == "read_only"
    assert service.job(job_id).status is JobStatus.FAILED


# -- headers, escaping, pages --------------------------------------------------------------


def test_every_console_response_has_the_security_headers(console: ConsoleClient) -> None:
    for result in (console.get("/ui/login"), console.get("/")):
        assert result.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert result.headers["x-robots-tag"].startswith("noindex")
        assert result.headers["referrer-policy"] == "same-origin"
        assert result.headers["x-content-type-options"] == "nosniff"
    console.login()
    page = console.get("/")
    assert page.headers["cache-control"] == "no-store"
    assert '<meta name="robots" content="noindex' in page.text
    assert "content-security-policy" not in console.client.simulate_get("/health").headers


def test_pages_have_no_inline_script_or_style(console: ConsoleClient, service: FakeService) -> None:
    console.login()
    job_id = _failed(service)
    for path in ("/", "/ui/jobs", f"/ui/jobs/{job_id}", "/ui/failures", "/ui/types"):
        text = console.get(path).text
        scripts = re.findall(r"<script[^>]*>", text)
        assert scripts == ['<script src="/ui/static/htmx.min.js" defer>'], path
        assert "<style" not in text and " style=" not in text, path
        assert not re.search(r"\son[a-z]+=", text), path  # no event handler attributes
        assert "hx-on" not in text and "js:" not in text, path


def test_payloads_and_errors_are_escaped(console: ConsoleClient, service: FakeService) -> None:
    console.login()
    evil = "<script>alert(1)</script>"
    job_id = _failed(service, payload={"x": evil}, result=evil, type="echo")
    service.add_job(status=JobStatus.FAILED, run_at=None, last_error=f"ValueError: {evil}")
    for path in (f"/ui/jobs/{job_id}", "/ui/jobs", "/ui/jobs?status=failed", "/ui/failures"):
        text = console.get(path).text
        assert evil not in text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in console.get(f"/ui/jobs/{job_id}").text


def test_the_overview_shows_counts(console: ConsoleClient, service: FakeService) -> None:
    console.login()
    page = console.get("/")
    assert page.status_code == 200
    assert 'id="count-pending"' in page.text and 'hx-trigger="every 3s' in page.text
    fragment = console.get("/ui/fragments/overview?paused=1")
    assert "is-paused" in fragment.text and "every 3s" not in fragment.text


def test_a_bad_filter_is_a_400_naming_it(console: ConsoleClient) -> None:
    console.login()
    result = console.get("/ui/jobs?status=bogus")
    assert result.status_code == 400 and "status" in result.json["error"]
    assert console.get("/ui/jobs?cursor=abc").json["code"] == "invalid_cursor"
    assert console.get("/ui/jobs?error=ab").json["error"].startswith("error")
    assert console.get("/ui/jobs?order=sideways").json["error"].startswith("order")


def test_a_bulk_retry_counts_confirms_then_acts_in_batches(
    console: ConsoleClient, service: FakeService
) -> None:
    console.login()
    total = BATCH_SIZE * 2 + 50
    for _ in range(total):
        _failed(service, type="sleep")
    _failed(service, type="echo")  # another type: left alone
    confirm = console.get("/ui/bulk?action=retry&type=sleep")
    assert f"<strong>{total}</strong>" in confirm.text
    form: list[tuple[str, str]] = [
        ("action", "retry"),
        ("type", "sleep"),
        ("status", "failed"),
        ("csrf", console.csrf()),
    ]
    steps = 0
    fields = form
    while True:
        steps += 1
        result = console.post("/ui/bulk", fields, headers={"HX-Request": "1"})
        assert result.status_code == 200, result.text
        if 'data-finished="yes"' in result.text:
            break
        # The next step posts the hidden fields the answer carries (as htmx does).
        fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', result.text)
        assert ("type", "sleep") in fields and steps < 10
    assert steps == 3
    assert f'<strong id="bulk-done">{total}</strong>' in result.text
    statuses = [job.status for job in service._jobs.values()]
    assert statuses.count(JobStatus.PENDING) == total
    assert statuses.count(JobStatus.FAILED) == 1


def test_without_a_token_the_console_is_open_to_local_requests_only(
    service: FakeService,
) -> None:
    console = ConsoleClient(service)
    page = console.get("/")
    assert page.status_code == 200 and "Log out" not in page.text
    assert console.cookie is not None  # an anonymous session carries the CSRF token
    job_id = _failed(service)
    result = console.post(
        "/ui/actions/jobs", {"action": "retry", "id": job_id, "csrf": console.csrf()}
    )
    assert result.status_code == 303
    foreign = console.client.simulate_get("/", headers={"Host": "rebind.evil.example"})
    assert foreign.status_code == 403


def test_the_console_can_be_switched_off(service: FakeService) -> None:
    client = TestClient(create_app(service), headers={"Host": LOCAL_HOST})
    assert client.simulate_get("/").status_code == 404
    assert client.simulate_get("/ui/jobs").status_code == 404


def test_static_files_are_served_with_their_types(console: ConsoleClient) -> None:
    assert console.get("/ui/static/htmx.min.js").headers["content-type"] == "text/javascript"
    assert console.get("/ui/static/console.css").headers["content-type"] == "text/css"
    assert console.get("/ui/static/htmx.LICENSE").status_code == 200
    assert console.get("/ui/static/../app.py").status_code == 404


def test_errors_on_console_pages_are_html_for_browsers(console: ConsoleClient) -> None:
    console.login()
    page = console.get("/ui/jobs/no-such-job", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no job with id" in page.text
    assert console.get("/ui/jobs/no-such-job").json["code"] == "not_found"


def test_attempts_failures_and_throughput_are_shown_escaped(
    console: ConsoleClient, service: FakeService
) -> None:
    console.login()
    evil = "<script>alert(1)</script>"
    job_id = _failed(service, error_class="RuntimeError")
    service.attempt_records[job_id] = [
        Attempt(job_id, 1, "failed", 1_800_000_001.0, 1_800_000_000.0, "node-a", "w1",
                error=f"RuntimeError: {evil}", error_class="RuntimeError",
                traceback=f'Traceback (most recent call last):\n  File "h.py"\n{evil}',
                duration=0.25),
    ]  # fmt: skip
    page = console.get(f"/ui/jobs/{job_id}").text
    assert 'class="traceback"' in page and "Traceback (most recent call last)" in page
    assert evil not in page and "node-a / w1" in page and "250 ms" in page
    service.groups = [FailureGroup("echo", "RuntimeError", 7, 1_800_000_001.0)]
    service.groups.append(FailureGroup("echo", None, 2, 1_800_000_001.0))
    failures = console.get("/ui/failures").text
    assert "/ui/bulk?action=retry&amp;type=echo&amp;status=failed&amp;error_class=RuntimeError" in (
        failures
    )
    assert "error_class=-" in failures  # the group without an error class
    service.minutes = [MinuteCount(1_800_000_000.0 + 60 * i, i, i % 2) for i in range(60)]
    overview = console.get("/ui/fragments/overview").text
    assert overview.count('class="bar-completed"') == 60
    assert "peak 60 a minute" in overview


def test_a_group_retry_acts_only_on_its_error_class(
    console: ConsoleClient, service: FakeService
) -> None:
    console.login()
    mine = [_failed(service, type="sleep", error_class="KeyError") for _ in range(3)]
    other = _failed(service, type="sleep", error_class="ValueError")
    confirm = console.get("/ui/bulk?action=retry&type=sleep&error_class=KeyError")
    assert "<strong>3</strong>" in confirm.text
    result = console.post(
        "/ui/bulk",
        {"action": "retry", "type": "sleep", "status": "failed", "error_class": "KeyError",
         "csrf": console.csrf()},
        headers={"HX-Request": "1"},
    )  # fmt: skip
    assert 'data-finished="yes"' in result.text
    assert [service.job(job_id).status for job_id in mine] == [JobStatus.PENDING] * 3
    assert service.job(other).status is JobStatus.FAILED


def test_a_finished_job_is_not_polled(console: ConsoleClient, service: FakeService) -> None:
    console.login()
    done = service.add_job(status=JobStatus.COMPLETED)
    assert "hx-trigger" not in console.get(f"/ui/jobs/{done.id}").text
    waiting = service.add_job(status=JobStatus.PENDING)
    assert 'hx-trigger="every 3s"' in console.get(f"/ui/jobs/{waiting.id}").text


class TypedService(FakeService):
    """The fake with type state and pause/resume, as the scheduling part adds them."""

    def __init__(self) -> None:
        super().__init__()
        self.paused: set[str] = set()

    def types(self, count_cap: int | None = None) -> list[Any]:
        return [
            SimpleNamespace(
                name=name,
                paused=name in self.paused,
                max_concurrency=2 if name == "sleep" else None,
                concurrency_key=None,
                rate_limit="10/s" if name == "sleep" else None,
                running=0,
                counts={"pending": 4, "failed": 1},
            )
            for name in self.known_types
        ]

    def pause_type(self, name: str) -> None:
        self.paused.add(name)

    def resume_type(self, name: str) -> None:
        self.paused.discard(name)


class Schedules:
    def __init__(self, service: FakeService) -> None:
        self.service = service
        self.runs: list[str] = []

    def schedules(self) -> list[Any]:
        return [
            SimpleNamespace(name="nightly", job_type="echo", cron="0 3 * * *", timezone="UTC",
                            next_run_at=1_800_000_000.0, last_run_at=None, last_job_id=None)
        ]  # fmt: skip

    def run_schedule(self, name: str) -> str:
        self.runs.append(name)
        return self.service.add_job().id


def test_types_pause_resume_and_run_a_schedule_now() -> None:

    service = TypedService()
    schedules = Schedules(service)
    guard = ConsoleGuard(
        TokenAuthMiddleware(TOKEN), Sessions(TOKEN), read_only=False, host_check=None
    )
    app = falcon.App(middleware=[guard])
    mount_console(app, service, guard, api_token=TOKEN, on_auth_failure=None,
                  clock=lambda: 1_800_000_000.0, schedules=schedules)  # fmt: skip
    console = ConsoleClient(service, api_token=TOKEN)
    console.client = TestClient(app, headers={"Host": LOCAL_HOST})
    console.login()
    page = console.get("/ui/types")
    assert 'action="/ui/types/sleep/pause"' in page.text and "10/s" in page.text
    assert "0 3 * * *" in page.text and 'action="/ui/schedules/nightly/run"' in page.text
    csrf = console.csrf("/ui/types")
    assert console.post("/ui/types/sleep/pause", {"csrf": csrf}).status_code == 303
    assert service.paused == {"sleep"}
    assert 'action="/ui/types/sleep/resume"' in console.get("/ui/types").text
    assert console.post("/ui/types/sleep/resume", {"csrf": csrf}).status_code == 303
    assert service.paused == set()
    result = console.post("/ui/schedules/nightly/run", {"csrf": csrf})
    assert result.status_code == 303 and result.headers["location"].startswith("/ui/jobs/")
    assert schedules.runs == ["nightly"]
    overview = console.get("/").text
    assert 'id="types-table"' in overview  # types with their state on the overview too
