"""Scenarios 1-3 (load): sustained overload, a connection storm, the soak (slow only).

The default sizes run in seconds; `-m slow` runs the long variants (a minute of overload,
2,000 clients, the soak), sized by RELIABILITY_* environment variables.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.reliability.harness import Harness, RssSampler, scale

# Overload: 4 workers x 50 ms jobs drain at most 80 jobs/s; we submit at 3x that.
WORKERS = 4
JOB_SECONDS = 0.05
DRAIN_RATE = WORKERS / JOB_SECONDS
CAPACITY = 40
RSS_TOLERANCE_MB = 25.0


def probe_job(seconds: float) -> Any:
    def make(seq: str) -> dict[str, Any]:
        return {"type": "probe", "payload": {"seq": seq, "sleep": seconds}}

    return make


class QueueWatcher:
    """Polls GET /metrics (JSON) for queue_size during a scenario."""

    def __init__(self, harness: Harness, interval: float = 0.1) -> None:
        self._harness = harness
        self._interval = interval
        self._stop = threading.Event()
        self.sizes: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QueueWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, _, stats = self._harness.request(
                    "GET", "/metrics", headers={"Accept": "application/json"}, timeout=5
                )
                if status == 200:
                    self.sizes.append(stats["queue_size"])
            except OSError:
                pass
            self._stop.wait(self._interval)


def run_overload(harness: Harness, seconds: float, scenario: str) -> None:
    harness.start(WORKER_COUNT=str(WORKERS), JOB_QUEUE_CAPACITY=str(CAPACITY))
    rss = RssSampler(harness.pid).start()
    load = harness.load(probe_job(JOB_SECONDS), threads=8, rate=3 * DRAIN_RATE)
    with QueueWatcher(harness) as queue:
        load.start()
        time.sleep(seconds)  # the load's duration: the scenario is "N seconds of overload"
        answers = load.stop()
    harness.wait_quiescent(timeout=60 + seconds)
    rss.stop()
    statuses = {a.status for a in answers}
    without_retry_after = [a for a in answers if a.status == 429 and not _whole(a.retry_after)]
    fig = harness.figures(
        scenario,
        answers,
        rss=rss,
        seconds=seconds,
        offered_per_s=round(len(answers) / seconds),
        queue_max=max(queue.sizes, default=0),
        capacity=CAPACITY,
        rss_growth_mb=round(rss.growth(), 1),
    )
    fig.assert_clean()
    assert statuses <= {201, 429}, statuses
    assert fig.shed > 0, "no 429: the scenario did not overload the server"
    assert not without_retry_after
    assert queue.sizes and max(queue.sizes) <= CAPACITY
    assert rss.growth() <= RSS_TOLERANCE_MB, rss.samples


def _whole(value: str | None) -> bool:
    return value is not None and value.isdigit() and int(value) >= 1


def test_sustained_overload_sheds_with_429_and_loses_nothing(harness: Harness) -> None:
    run_overload(harness, scale(4, "RELIABILITY_OVERLOAD_SECONDS"), "overload")


@pytest.mark.slow
def test_sustained_overload_for_a_minute(harness: Harness) -> None:
    run_overload(harness, scale(60, "RELIABILITY_OVERLOAD_SECONDS_SLOW"), "overload_long")


# -- connection storm --------------------------------------------------------------------


def _one_client(port: int, seq: str) -> tuple[int | None, float]:
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = json.dumps({"type": "probe", "payload": {"seq": seq, "sleep": 0.01}})
        conn.request("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status, time.monotonic() - started
    except OSError:
        return None, time.monotonic() - started


def run_storm(harness: Harness, clients: int, scenario: str) -> None:
    harness.start(
        WORKER_COUNT="4",
        JOB_QUEUE_CAPACITY=str(clients + 100),
        HTTP_CONNECTION_LIMIT=str(max(100, clients // 2)),
    )
    port = harness.port()
    assert port is not None
    rss = RssSampler(harness.pid).start()
    # Keep the workers busy while the storm runs.
    for n in range(8):
        harness.submit("probe", {"seq": f"busy-{n}", "sleep": 1.0})
    # Open every connection first, then send on all of them: a storm of connections.
    socks = []
    for _ in range(clients):
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=60))
    health: list[float] = []
    stop = threading.Event()

    def watch_health() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status, _, _ = harness.request("GET", "/health", timeout=30)
            assert status == 200
            health.append(time.monotonic() - started)
            stop.wait(0.1)

    watcher = threading.Thread(target=watch_health, daemon=True)
    watcher.start()
    results = []
    with ThreadPoolExecutor(max_workers=min(clients, 256)) as pool:
        futures = [pool.submit(_send_on, sock, f"storm-{n}") for n, sock in enumerate(socks)]
        results = [future.result() for future in futures]
    stop.set()
    watcher.join(35)
    # Service resumes: new clients are served at once.
    after = _one_client(port, "after-0")
    assert after[0] == 201
    harness.wait_quiescent(timeout=120)
    rss.stop()
    from tests.reliability.load import Answer

    answers = [
        Answer(f"storm-{n}", status, job_id, latency, None, None, None, True)
        for n, (status, job_id, latency) in enumerate(results)
    ]
    fig = harness.figures(
        scenario,
        answers,
        rss=rss,
        clients=clients,
        health_max_ms=round(max(health, default=0) * 1000),
        health_checks=len(health),
    )
    fig.assert_clean()
    assert {a.status for a in answers} <= {201}, {a.status for a in answers}
    assert health and max(health) < 10.0


def _send_on(sock: socket.socket, seq: str) -> tuple[int | None, str | None, float]:
    body = json.dumps({"type": "probe", "payload": {"seq": seq, "sleep": 0.01}}).encode()
    started = time.monotonic()
    try:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        raw = response.read()
        job_id = json.loads(raw).get("id") if response.status == 201 else None
        return response.status, job_id, time.monotonic() - started
    except OSError:
        return None, None, time.monotonic() - started
    finally:
        sock.close()


def test_connection_storm_keeps_health_responsive(harness: Harness) -> None:
    run_storm(harness, int(scale(300, "RELIABILITY_STORM_CLIENTS")), "storm")


@pytest.mark.slow
def test_connection_storm_of_2000_clients(harness: Harness) -> None:
    run_storm(harness, int(scale(2000, "RELIABILITY_STORM_CLIENTS_SLOW")), "storm_long")
