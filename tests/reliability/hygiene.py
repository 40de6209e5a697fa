"""Error hygiene (scenario 19): every error response of the run is collected and scanned
for what must never reach a client: tracebacks, file paths, SQL, library names, versions."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

# Case-insensitive; each is something an error body or header must not reveal.
LEAK_PATTERNS = {
    "traceback": re.compile(r"traceback|most recent call last|\bline \d+, in\b", re.I),
    "file path": re.compile(
        r"(?:/(?:usr|home|root|tmp|work|var|srv|opt|etc|proc)/)|site-packages|\.py\b|[A-Z]:\\",
        re.I,
    ),
    "sql": re.compile(
        r"\b(?:select\s.+\sfrom|insert\s+into|update\s+\w+\s+set|delete\s+from|pragma|"
        r"begin immediate|sqlite_\w+|no such (?:table|column))\b",
        re.I,
    ),
    "library": re.compile(
        r"\b(?:falcon|waitress|sqlite3?|psycopg\d?|pykka|python|cpython|prometheus|gunicorn)\b",
        re.I,
    ),
    "version": re.compile(r"\b\d+\.\d+\.\d+\b"),
    "exception name": re.compile(
        r"\b(?:\w+Error|\w+Exception|KeyError|SystemExit|AssertionError)\b(?!_)"
    ),
}
FORBIDDEN_HEADERS = ("server", "x-powered-by")


@dataclass(frozen=True)
class ErrorResponse:
    where: str
    status: int
    headers: dict[str, str]
    body: bytes
    echoed: tuple[str, ...] = ()  # what the client itself sent (a path id): not a leak


class ErrorCollector:
    """Thread-safe; shared by the whole reliability run (see conftest)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.responses: list[ErrorResponse] = []

    def add(
        self, where: str, status: int, headers: Any, body: bytes, echoed: tuple[str, ...] = ()
    ) -> None:
        lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
        with self._lock:
            self.responses.append(ErrorResponse(where, status, lowered, body, echoed))

    def __len__(self) -> int:
        with self._lock:
            return len(self.responses)


def problems_of(response: ErrorResponse) -> list[str]:
    """What is wrong with one error response (empty: clean)."""
    found = []
    text = response.body.decode("utf-8", "replace")
    try:
        body = json.loads(response.body)
    except ValueError:
        body = None
    if not (
        isinstance(body, dict)
        and isinstance(body.get("error"), str)
        and isinstance(body.get("code"), str)
    ):
        found.append("not the JSON error body")
    elif response.status >= 500 and not body.get("request_id"):
        found.append("a 5xx without request_id")
    exposed = text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    for sent in response.echoed:
        exposed = exposed.replace(sent, "")
    for name, pattern in LEAK_PATTERNS.items():
        match = pattern.search(exposed)
        if match:
            found.append(f"{name}: {match.group(0)!r}")
    for header in FORBIDDEN_HEADERS:
        if header in response.headers:
            found.append(f"header {header}")
    return found


def scan(responses: list[ErrorResponse]) -> list[str]:
    return [
        f"{r.where} -> {r.status}: {problem} in {r.body[:200]!r}"
        for r in responses
        for problem in problems_of(r)
    ]
