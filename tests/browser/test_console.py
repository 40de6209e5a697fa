"""The operator's console in a real headless Chromium against a real server (issue 14).

Each test leaves a screenshot of each page it visits in artifacts/screenshots/, and the
`console` fixture fails a test that left any SEVERE entry (a script error, a CSP
violation, a failed request) in the browser's console.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.conftest import TOKEN, Console, wait_until


def test_login_is_required_and_a_wrong_token_is_refused(console: Console) -> None:
    console.driver.delete_all_cookies()
    console.get("/")
    wait_until(lambda: "/ui/login" in console.driver.current_url, what="redirect to login")
    console.screenshot("login")
    console.find("#token").send_keys("not-the-token-at-all")
    console.find("#login").click()
    wait_until(lambda: console.find_all(".error"), what="the login error")
    assert "not this server's" in console.text(".error")
    console.driver.get_log("browser")  # the 401 answer itself is logged as a failed load
    console.login()
    cookie = console.driver.get_cookie("workstream_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    console.screenshot("overview")


def test_counts_change_after_jobs_are_submitted(console: Console) -> None:
    console.login()
    console.get("/")
    before = int(console.text("#total-created"))
    pending_before = int(console.text("#count-pending"))
    for _ in range(3):
        console.submit("echo", {"n": 1}, delay="1h")  # stays pending: the count is stable
    # No reload: the overview fragment polls and swaps itself.
    wait_until(lambda: int(console.text("#total-created")) == before + 3, what="created count +3")
    wait_until(lambda: int(console.text("#count-pending")) >= pending_before + 3, what="pending +3")
    assert console.classes("#overview").split()[-1] == "is-live"
    console.screenshot("overview-after-submit")


def test_filter_open_failed_job_read_traceback_retry_it(console: Console) -> None:
    console.login()
    console.flag.write_text("fail")
    job = console.submit("flaky", {"marker": "<script>alert(1)</script>"})
    console.wait_status(job["id"], "failed")

    console.get("/ui/jobs")
    Select(console.find("#f-status")).select_by_value("failed")
    Select(console.find("#f-type")).select_by_value("flaky")
    console.find("#apply-filters").click()
    wait_until(lambda: "status=failed" in console.driver.current_url, what="filtered url")
    console.screenshot("jobs-filtered")
    rows = console.find_all(".job-row")
    assert rows and all(row.find_element(By.CSS_SELECTOR, ".s-failed") for row in rows)
    console.find(f'.job-row[data-id="{job["id"]}"] a.job-link').click()
    wait_until(lambda: console.find_all("#job-status"), what="the job page")
    assert "failed" in console.text("#job-status")
    assert "FlagRaised" in console.text("#last-error")
    traceback = console.find("#attempts details.traceback")
    traceback.find_element(By.TAG_NAME, "summary").click()
    text = traceback.find_element(By.TAG_NAME, "pre").text
    assert "Traceback" in text and "FlagRaised" in text and "console_handlers.py" in text
    console.find("#payload summary").click()
    assert "<script>alert(1)</script>" in console.text("#payload pre")  # shown as text
    console.screenshot("job-failed")

    console.flag.unlink()
    console.find("#retry-job").click()
    wait_until(lambda: "completed" in console.text("#job-status"), what="the retried job done")
    console.screenshot("job-completed")
    assert console.api("GET", f"/jobs/{job['id']}")[1]["status"] == "completed"


def test_retry_a_whole_failure_group(console: Console) -> None:
    console.login()
    console.flag.write_text("fail")
    jobs = [console.submit("flaky", {"n": n}) for n in range(3)]
    for job in jobs:
        console.wait_status(job["id"], "failed")
    console.flag.unlink()

    console.get("/ui/failures")
    console.screenshot("failures")
    group = console.find('.failure-group[data-type="flaky"][data-error-class="FlagRaised"]')
    group.find_element(By.CSS_SELECTOR, "a.retry-group").click()
    wait_until(lambda: console.find_all("#bulk-count"), what="the confirmation page")
    # Earlier tests may have left failed flaky jobs: the group holds at least these three.
    count = int(console.text("#bulk-count strong"))
    assert count >= 3
    console.screenshot("bulk-confirm")
    console.find("#confirm-bulk").click()
    wait_until(lambda: console.find_all("#bulk-finished"), what="the bulk retry finished")
    assert int(console.text("#bulk-done")) == count
    console.screenshot("bulk-done")
    for job in jobs:
        console.wait_status(job["id"], "completed")


def test_pause_and_resume_a_type(console: Console) -> None:
    console.login()
    console.get("/ui/types")
    console.screenshot("types")
    buttons = console.find_all("#type-flaky button.pause")
    assert buttons, "the types page offers no pause for 'flaky'"
    buttons[0].click()
    wait_until(lambda: "paused" in console.text("#type-flaky .type-state"), what="paused")
    job = console.submit("flaky", {})
    started = time.monotonic()
    while time.monotonic() < started + 1.5:  # a paused type's job is not started
        assert console.api("GET", f"/jobs/{job['id']}")[1]["status"] == "pending"
        time.sleep(0.2)
    console.screenshot("types-paused")
    console.find("#type-flaky button.resume").click()
    wait_until(lambda: "running" in console.text("#type-flaky .type-state"), what="resumed")
    console.wait_status(job["id"], "completed")


def _post(console: Console, path: str, form: dict[str, str], headers: dict[str, str]) -> int:
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(console.url + path, data=data, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    request.add_header("Cookie", f"workstream_console={console.cookie()}")
    request.add_header("Accept", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        body: Any = json.loads(error.read() or b"{}")
        assert error.code != 403 or body["code"] == "forbidden", body
        return int(error.code)


def test_a_cross_origin_post_is_refused(console: Console) -> None:
    console.login()
    job = console.submit("echo", {"x": 1}, delay="1h")
    console.get(f"/ui/jobs/{job['id']}")
    csrf = console.find('input[name="csrf"]').get_attribute("value")
    form = {"csrf": csrf, "action": "cancel", "id": job["id"]}
    foreign = {"Origin": "http://evil.example"}
    assert _post(console, "/ui/actions/jobs", form, foreign) == 403
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    assert _post(console, "/ui/actions/jobs", form, cross_site) == 403
    without_csrf = {key: value for key, value in form.items() if key != "csrf"}
    assert _post(console, "/ui/actions/jobs", without_csrf, {"Origin": console.url}) == 403
    assert console.api("GET", f"/jobs/{job['id']}")[1]["status"] == "pending"
    # The browser's own request (same origin, its CSRF field) is accepted.
    console.find("#cancel-job").click()
    wait_until(lambda: "cancelled" in console.text("#job-status"), what="cancelled")
    console.screenshot("job-cancelled")


def _requests_by_tab(console: Console) -> dict[str, list[str]]:
    """The URLs each tab requested since the last call (Chrome's performance log covers
    every tab, each by its own id)."""
    out: dict[str, list[str]] = {}
    for entry in console.driver.get_log("performance"):
        record = json.loads(entry["message"])
        message = record["message"]
        if message["method"] == "Network.requestWillBeSent":
            out.setdefault(record["webview"], []).append(message["params"]["request"]["url"])
    return out


def test_polling_pauses_while_the_tab_is_hidden(console: Console) -> None:
    console.login()
    console.get("/")
    first = console.driver.current_window_handle
    wait_until(lambda: "is-live" in console.classes("#overview"))
    polled = wait_until(
        lambda: [url for urls in _requests_by_tab(console).values() for url in urls
                 if "/ui/fragments/overview" in url],
        what="the overview polling",
    )  # fmt: skip
    assert all("paused" not in url for url in polled)
    console.driver.switch_to.new_window("tab")  # the console's tab is hidden now
    console.get("/ui/failures")
    hidden_since = time.monotonic()
    while time.monotonic() < hidden_since + 4.0:  # more than one poll period (3 s)
        time.sleep(0.5)
    requests = _requests_by_tab(console)
    overview = [url for urls in requests.values() for url in urls if "fragments/overview" in url]
    # Hidden, the region fetched its paused form once, then nothing.
    assert len(overview) == 1 and overview[0].endswith("?paused=1"), overview
    console.screenshot("other-tab")
    console.driver.close()
    console.driver.switch_to.window(first)
    # Shown again, it comes back live and polls again.
    wait_until(
        lambda: "is-live" in console.classes("#overview"),
        what=f"live again ({console.classes('#overview')})",
    )
    stamp = console.text("#overview .updated")
    wait_until(lambda: console.text("#overview .updated") != stamp, what="polling again")
    console.screenshot("overview-live-again")


def test_the_console_log_check_sees_a_csp_violation(console: Console) -> None:
    """The no-errors check of every test is meaningful: an inline script (which the
    console never sends) is refused by the CSP, and that refusal is a SEVERE entry."""
    console.login()
    console.get("/ui/jobs")
    console.driver.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
        "document.body.appendChild(s);"
    )
    severe = wait_until(console.severe_logs, what="the CSP refusal in the console log")
    assert any("Content Security Policy" in entry["message"] for entry in severe), severe
    assert console.driver.execute_script("return window.ran === undefined")
