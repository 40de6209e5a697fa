"""An in-process stub of the WorkStream HTTP API (SPEC section 4) for the client's tests.

It keeps jobs in a dict and answers like the real server closely enough to check the client:
status codes, error bodies, `Location`, `Retry-After`, `Link` pagination, Idempotency-Key,
bearer token. It records every request so tests can check what the client sent. Tests drive
it without sleeping: `script` queues canned answers (or a dropped connection, or a hang) for
the next matching requests, `script_states` applies one job update per poll, and
`wait_for_requests` blocks (bounded) until the client has sent what the test waits for.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from workstream.client import Client

STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
BOUND = 5.0  # seconds: the longest any test waits for anything


@dataclass
class Recorded:
    method: str
    target: str  # path and query, as sent
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Canned:
    status: int = 200
    body: Any = None  # bytes go out as they are, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None  # "drop": close without answering; "hang": answer nothing


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Stub:
    def __init__(self) -> None:
        self.url = ""
        self.token: str | None = None
        self.capacity = 100
        self.healthy = True
        self.known_types = {"echo", "sleep", "email_send", "webhook"}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.attempts: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Recorded] = []
        self.release = threading.Event()  # set at teardown: frees handlers told to hang
        self._changed = threading.Condition()
        self._canned: dict[tuple[str, str], deque[Canned]] = {}
        self._states: dict[str, deque[dict[str, Any]]] = {}
        self._idempotency: dict[str, tuple[str, str]] = {}

    # -- driving it from a test --------------------------------------------------------------

    def add_job(self, type: str = "echo", **fields: Any) -> dict[str, Any]:
        with self._changed:
            job = self._new_job({"type": type, "payload": fields.pop("payload", None)})
            job.update(fields)
            self.jobs[job["id"]] = job
            return dict(job)

    def update(self, job_id: str, **fields: Any) -> None:
        with self._changed:
            self.jobs[job_id].update(fields)

    def script(self, method: str, path: str, status: int = 200, body: Any = None, **kw: Any):
        """Answer the next `method path` request with this instead of the stub's own logic."""
        with self._changed:
            canned = Canned(status, body, kw.get("headers", {}), kw.get("action"))
            self._canned.setdefault((method, path), deque()).append(canned)

    def script_states(self, job_id: str, *updates: dict[str, Any]) -> None:
        """Each GET of the job applies the next update first; after the last, the job stays."""
        with self._changed:
            self._states[job_id] = deque(updates)

    def wait_for_requests(self, predicate: Callable[[list[Recorded]], bool]) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.requests), timeout=BOUND)

    def sent(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self._changed:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    # -- serving ------------------------------------------------------------------------------

    def record(self, request: Recorded) -> Canned | None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()
            queue = self._canned.get((request.method, request.path))
            return queue.popleft() if queue else None

    def answer(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        with self._changed:
            try:
                return self._route(r)
            except _Refused as exc:
                return exc.status, {"error": exc.message, "code": exc.code}, exc.headers

    def _route(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        expected = f"Bearer {self.token}"
        needs_token = self.token and (r.method, r.path) != ("GET", "/health")
        if needs_token and r.headers.get("authorization") != expected:
            raise _Refused(401, "unauthorized", "missing or wrong API token")
        parts = r.path.strip("/").split("/")
        routes: dict[tuple[str, ...], dict[str, Callable[..., Any]]] = {
            ("jobs",): {"POST": self._submit, "GET": self._list},
            ("jobs", "batch"): {"POST": self._submit_batch},
            ("health",): {"GET": self._health},
            ("metrics",): {"GET": self._metrics},
        }
        if len(parts) == 2 and parts[0] == "jobs" and parts[1] != "batch":
            return self._dispatch({"GET": self._get}, r, parts[1])
        if len(parts) == 3 and parts[0] == "jobs" and parts[2] == "attempts":
            return self._dispatch({"GET": self._attempts}, r, parts[1])
        if len(parts) == 3 and parts[0] == "jobs" and parts[2] in ("cancel", "retry"):
            action = self._cancel if parts[2] == "cancel" else self._retry
            return self._dispatch({"POST": action}, r, parts[1])
        if tuple(parts) not in routes:
            raise _Refused(404, "not_found", f"no such path: {r.path}")
        return self._dispatch(routes[tuple(parts)], r)

    def _dispatch(self, methods: dict[str, Callable[..., Any]], r: Recorded, *args: Any):
        if r.method not in methods:
            raise _Refused(405, "method_not_allowed", f"{r.method} is not allowed here")
        if r.method == "POST":
            content_type = r.headers.get("content-type", "")
            if content_type.split(";")[0].strip() != "application/json":
                raise _Refused(415, "unsupported_media_type", "send application/json")
            try:
                body = json.loads(r.body)
            except ValueError:
                raise _Refused(400, "invalid_json", "the body is not JSON") from None
            return methods[r.method](r, body, *args)
        return methods[r.method](r, *args)

    def _new_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        return {
            "id": str(uuid.uuid4()),
            "type": spec["type"],
            "payload": spec.get("payload"),
            "status": "pending",
            "attempts": 0,
            "max_retries": spec.get("max_retries", 3),
            "last_error": None,
            "result": None,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
            "run_at": spec.get("run_at") or now,
        }

    def _check_spec(self, spec: Any, where: str = "") -> None:
        if not isinstance(spec, dict):
            raise _Refused(400, "invalid_request", f"{where}a job must be a JSON object")
        job_type = spec.get("type")
        if not isinstance(job_type, str) or not job_type.strip():
            raise _Refused(400, "invalid_request", f"{where}type must be a non-empty string")
        if "delay" in spec and "run_at" in spec:
            raise _Refused(400, "invalid_request", f"{where}give delay or run_at, not both")
        if job_type not in self.known_types:
            known = ", ".join(sorted(self.known_types))
            raise _Refused(422, "unknown_job_type", f"{where}no handler for {job_type!r}: {known}")

    def _make_room(self, count: int) -> None:
        pending = sum(1 for job in self.jobs.values() if job["status"] == "pending")
        if pending + count > self.capacity:
            raise _Refused(429, "queue_full", "the queue is full", **{"Retry-After": "7"})

    def _submit(self, r: Recorded, spec: Any):
        self._check_spec(spec)
        key = r.headers.get("idempotency-key")
        fingerprint = json.dumps(spec, sort_keys=True)
        if key is not None and key in self._idempotency:
            first_fingerprint, job_id = self._idempotency[key]
            if first_fingerprint != fingerprint:
                raise _Refused(409, "idempotency_key_reused", "key reused with another body")
            return 200, self.jobs[job_id], {"Location": f"/jobs/{job_id}"}
        self._make_room(1)
        job = self._new_job(spec)
        self.jobs[job["id"]] = job
        if key is not None:
            self._idempotency[key] = (fingerprint, job["id"])
        return 201, job, {"Location": f"/jobs/{job['id']}"}

    def _submit_batch(self, r: Recorded, body: Any):
        specs = body.get("jobs") if isinstance(body, dict) else None
        if not isinstance(specs, list) or not 1 <= len(specs) <= 1000:
            raise _Refused(400, "invalid_request", "jobs must be an array of 1 to 1000 jobs")
        for index, spec in enumerate(specs):
            self._check_spec(spec, f"jobs[{index}]: ")
        self._make_room(len(specs))
        jobs = [self._new_job(spec) for spec in specs]
        self.jobs.update((job["id"], job) for job in jobs)
        return 201, jobs, {}

    def _list(self, r: Recorded):
        query = {name: values[-1] for name, values in r.query.items()}
        status, job_type = query.get("status"), query.get("type")
        if status is not None and status not in STATUSES:
            raise _Refused(400, "invalid_request", f"unknown status {status!r}")
        try:
            limit = int(query.get("limit", "100"))
            start = int(query.get("cursor", "0"))
        except ValueError:
            raise _Refused(400, "invalid_request", "limit and cursor must be integers") from None
        if not 1 <= limit <= 1000:
            raise _Refused(400, "invalid_request", "limit must be between 1 and 1000")
        matching = [
            job
            for job in self.jobs.values()
            if (status is None or job["status"] == status)
            and (job_type is None or job["type"] == job_type)
        ]
        headers = {}
        if start + limit < len(matching):
            follow = {k: v for k, v in query.items() if k != "cursor"}
            follow["cursor"] = str(start + limit)
            headers["Link"] = f'</jobs?{urlencode(follow)}>; rel="next"'
        return 200, matching[start : start + limit], headers

    def _attempts(self, r: Recorded, job_id: str):
        self._find(job_id)
        return 200, self.attempts.get(job_id, []), {}

    def _find(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise _Refused(404, "not_found", f"no job {job_id}")
        return self.jobs[job_id]

    def _get(self, r: Recorded, job_id: str):
        job = self._find(job_id)
        states = self._states.get(job_id)
        if states:
            job.update(states.popleft())
        return 200, job, {}

    def _cancel(self, r: Recorded, body: Any, job_id: str):
        job = self._find(job_id)
        if job["status"] not in ("pending", "failed"):
            raise _Refused(409, "invalid_state", f"cannot cancel a {job['status']} job")
        job.update(status="cancelled", run_at=None, updated_at=_now())
        return 200, job, {}

    def _retry(self, r: Recorded, body: Any, job_id: str):
        job = self._find(job_id)
        if job["status"] != "failed":
            raise _Refused(409, "invalid_state", f"cannot retry a {job['status']} job")
        job.update(status="pending", run_at=_now(), updated_at=_now())
        return 200, job, {}

    def _health(self, r: Recorded):
        if self.healthy:
            return 200, {"status": "ok", "workers": 10}, {}
        return 503, {"status": "shutting_down"}, {}

    def _metrics(self, r: Recorded):
        if "application/json" not in r.headers.get("accept", ""):
            return 200, b"# HELP workstream_jobs_created_total Jobs created\n", {}
        statuses = [job["status"] for job in self.jobs.values()]
        return (
            200,
            {
                "total_jobs_created": len(statuses),
                "jobs_completed": statuses.count("completed"),
                "jobs_failed": statuses.count("failed"),
                "jobs_retried": 0,
                "jobs_in_progress": statuses.count("processing"),
                "queue_size": statuses.count("pending"),
            },
            {},
        )


class _Handler(BaseHTTPRequestHandler):
    server: _StubServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _handle(self, method: str) -> None:
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        split = urlsplit(self.path)
        request = Recorded(
            method=method,
            target=self.path,
            path=split.path,
            query=parse_qs(split.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length),
        )
        canned = stub.record(request)
        if canned is None:
            self._reply(*stub.answer(request))
        elif canned.action == "hang":
            stub.release.wait(timeout=BOUND)
            self.close_connection = True
        elif canned.action == "drop":
            self.close_connection = True
        else:
            self._reply(canned.status, canned.body, canned.headers)

    def _reply(self, status: int, body: Any, headers: dict[str, str]) -> None:
        if isinstance(body, bytes):
            data, content_type = body, "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        headers = {"Content-Type": content_type, **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, stub: Stub) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stub = stub


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()
    server = _StubServer(state)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=BOUND)


@pytest.fixture
def client(stub: Stub) -> Client:
    return Client(stub.url, timeout=BOUND)
