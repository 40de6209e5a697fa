"""Browser tests: a real `workstream serve` (subprocess) and a real headless Chromium.

One server and one browser per module (starting them is most of the cost). Chromium and
chromedriver are Debian's (`apt-get install chromium chromium-driver`; `make test` and
`.ci/run` install them); the tests are skipped, loudly, only when they are missing.
Every page a test visits is saved as a screenshot under artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serverproc import REPO, ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "browser-test-token-0123456789"
SCREENSHOTS = REPO / "artifacts" / "screenshots"
WAIT = 15.0

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll `condition` until it returns something truthy (a deadline, never a bare sleep)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # an element not there yet, a stale one after a swap
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}: last {last!r}")


class Console:
    """The browser, the server and the helpers a test needs."""

    def __init__(self, driver: WebDriver, server: ServerProcess, flag: Path) -> None:
        self.driver = driver
        self.server = server
        self.flag = flag
        self.test_name = "test"

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, data = self.server.request(
            method, path, body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        return status, data

    def submit(self, job_type: str, payload: Any = None, **fields: Any) -> dict[str, Any]:
        status, job = self.api("POST", "/jobs", {"type": job_type, "payload": payload, **fields})
        assert status == 201, job
        return job

    def wait_status(self, job_id: str, status: str) -> dict[str, Any]:
        return wait_until(
            lambda: (job := self.api("GET", f"/jobs/{job_id}")[1])["status"] == status and job,
            what=f"job {job_id} {status}",
        )

    def get(self, path: str) -> None:
        self.driver.get(self.url + path)

    def find(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        """The element's text; read again when htmx swapped it between find and read."""
        return str(self._read(css, lambda element: element.text))

    def classes(self, css: str) -> str:
        return str(self._read(css, lambda element: element.get_attribute("class")))

    def _read(self, css: str, read: Callable[[Any], Any]) -> Any:
        for _ in range(20):
            try:
                return read(self.find(css))
            except StaleElementReferenceException:
                continue
        raise AssertionError(f"{css} kept being replaced")

    def screenshot(self, page: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.test_name}-{page}")
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def login(self) -> None:
        self.get("/ui/login")
        if "/ui/login" not in self.driver.current_url:
            return  # still logged in
        self.find("#token").send_keys(TOKEN)
        self.find("#login").click()
        wait_until(lambda: self.find_all("#overview"), what="the overview after login")

    def severe_logs(self) -> list[dict[str, Any]]:
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def cookie(self) -> str:
        cookie = self.driver.get_cookie("workstream_console")
        assert cookie is not None
        return str(cookie["value"])


def _browser_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    workdir = tmp_path_factory.mktemp("console")
    flag = workdir / "fail.flag"
    proc = ServerProcess(
        workdir,
        env={
            "API_TOKEN": TOKEN,
            "WORKER_PROCESSES": "0",
            "WORKER_COUNT": "4",
            "JOB_HANDLERS": "tests.browser.console_handlers",
            "FLAKY_FLAG": str(flag),
            "MAX_RETRIES": "0",
            "SWEEPER_INTERVAL": "1s",
            "LOG_LEVEL": "info",
        },
    )
    proc.start()
    try:
        yield proc, flag
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    if not _browser_available():
        pytest.skip(
            f"{CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)"
        )
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    chrome.implicitly_wait(0)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def console(
    request: pytest.FixtureRequest, driver: WebDriver, server: tuple[ServerProcess, Path]
) -> Iterator[Console]:
    proc, flag = server
    flag.unlink(missing_ok=True)
    view = Console(driver, proc, flag)
    view.test_name = request.node.name
    driver.get_log("browser")  # start each test with an empty console log
    yield view
    flag.unlink(missing_ok=True)
    severe = view.severe_logs()
    assert severe == [], f"errors in the browser console: {severe}"
