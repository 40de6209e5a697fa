"""Run `workstream serve` as a real child process and read its JSON logs.

The server picks a free port (PORT=0) and logs it in its `server_started` line; the helper
waits for that line (bounded), then talks HTTP to it. Every wait here has a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


class ServerProcess:
    def __init__(
        self, workdir: Path, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> None:
        self.workdir = workdir
        self.env = {
            **os.environ,
            "PORT": "0",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.logs: list[dict[str, Any]] = []
        self.port: int | None = None
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    # -- process ---------------------------------------------------------------------

    def start(self, wait: bool = True) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workstream", "serve", *self.args],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait:
            self.wait_started()
        return self

    def wait_started(self) -> int:
        """Wait for the `server_started` line; returns the port it listens on."""
        started = self.wait_for_log("server_started", timeout=START_TIMEOUT)
        self.port = int(started["url"].rsplit(":", 1)[1])
        return self.port

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    self.logs.append(record)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_log(self, event: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for record in self.logs:
                if record.get("event") == event and all(
                    record.get(k) == v for k, v in match.items()
                ):
                    return record
            return None

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                record = found()
                if record is not None:
                    return record
                exited = self.proc is not None and self.proc.poll() is not None
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (exited and not self._reader_alive()):
                    raise AssertionError(
                        f"no {event} log line (exit={self.proc.poll() if self.proc else None})"
                        f"; stderr tail:\n" + "\n".join(self.lines[-30:])
                    )
                self._cond.wait(min(remaining, 0.5))

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL if it does not go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.wait(10)

    # -- HTTP ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, resp.headers, _decode(raw, resp.headers)
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, err.headers, _decode(raw, err.headers)


def run_workstream(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`python -m workstream ARGS` to completion in `workdir` (a server's env by default)."""
    return subprocess.run(
        [sys.executable, "-m", "workstream", *args],
        cwd=workdir,
        env=env if env is not None else ServerProcess(workdir).env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _decode(raw: bytes, headers: Any) -> Any:
    if "json" in (headers.get("Content-Type") or ""):
        return json.loads(raw)
    return raw.decode("utf-8", "replace")
