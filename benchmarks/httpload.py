"""HTTP load: `wrk` with a Lua script when it is installed, else a built-in Python
generator (closed loop, keep-alive connections on threads), which is slower than the
server on a small machine and says so in the results."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import percentile

WRK_THREADS = 2
CONNECTIONS = 64
PY_THREADS = 16


@dataclass
class Load:
    requests_per_s: float
    non_2xx: int
    total: int
    generator: str
    latency_ms: dict[str, float] = field(default_factory=dict)  # "p50", "p99", "max"


def generator_name() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def run(port: int, path: str, body: bytes, seconds: float) -> Load:
    if shutil.which("wrk"):
        return _wrk(port, path, body, seconds)
    return _python(port, path, body, seconds)


def _lua_string(data: bytes) -> str:
    return "'" + data.decode().replace("\\", "\\\\").replace("'", "\\'") + "'"


def _wrk(port: int, path: str, body: bytes, seconds: float) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {_lua_string(body)}\n"
        )
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{WRK_THREADS}",
                f"-c{CONNECTIONS}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    latency = {}
    for label, key in (("50%", "p50"), ("99%", "p99")):
        match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match:
            latency[key] = _ms(match.group(1), match.group(2))
    match = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    if match:
        latency["max"] = _ms(match.group(1), match.group(2))
    return Load(rate, int(bad.group(1)) if bad else 0, total, "wrk", latency)


def _ms(number: str, unit: str) -> float:
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _python(port: int, path: str, body: bytes, seconds: float) -> Load:
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    headers = {"Content-Type": "application/json"}

    def loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: dict[int, int] = {}
        times: list[float] = []
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                mine[0] = mine.get(0, 0) + 1
                continue
            times.append((time.perf_counter() - sent) * 1000)
            mine[response.status] = mine.get(response.status, 0) + 1
        conn.close()
        with lock:
            for status, count in mine.items():
                statuses[status] = statuses.get(status, 0) + count
            latencies.extend(times)

    started = time.monotonic()
    threads = [threading.Thread(target=loop) for _ in range(PY_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    good = sum(count for status, count in statuses.items() if 200 <= status < 300)
    latency = {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies, default=float("nan")),
    }
    return Load(total / elapsed, total - good, total, "python", latency)
