"""The probe handler the reliability scenarios load into the real server (JOB_HANDLERS).

Every attempt appends to the ledger named by `PROBE_LEDGER`, a file outside WorkStream's
database: a `started` line before it does anything, and a line with its outcome when it
ends (`ok`, `raised`, `system_exit`, `hang_returned`). Each line is one `os.write` on an
`O_APPEND` descriptor, so lines never interleave, and a line written before the process
is killed is in the kernel and survives the kill.

The payload says what to do, in this order:
    {"seq": "...",          the load generator's tag (ignored here; the checker reads it)
     "sleep": s,            sleep s seconds first
     "block": path,         then wait while that file exists (at most 120 s)
     "hang": s,             sleep s seconds (past the handler timeout of `probe_timed`)
     "fail": true | n,      raise always, or on attempts 1..n
     "system_exit": true,   raise SystemExit(3)
     "os_exit": true,       os._exit(17): the whole server dies mid-attempt
     "sigkill": true}       SIGKILL the server's own process
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from workstream import handler

LEDGER_ENV = "PROBE_LEDGER"
# The handler timeout of `probe_timed`, in seconds (PROBE_TIMEOUT, default 0.5).
TIMEOUT = float(os.environ.get("PROBE_TIMEOUT", "0.5"))


def _write(job: Any, start: float, end: float | None, outcome: str) -> None:
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    line = json.dumps(
        {
            "job_id": job.id,
            "attempt": job.attempt,
            "pid": os.getpid(),
            "start": start,
            "end": end,
            "outcome": outcome,
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _run(payload: Any, job: Any) -> Any:
    payload = payload if isinstance(payload, dict) else {}
    start = time.time()
    _write(job, start, None, "started")
    outcome = "raised"
    try:
        if payload.get("sleep"):
            time.sleep(float(payload["sleep"]))
        if payload.get("block"):
            deadline = time.monotonic() + 120
            while os.path.exists(payload["block"]) and time.monotonic() < deadline:
                time.sleep(0.02)
        if payload.get("hang"):
            time.sleep(float(payload["hang"]))
            outcome = "hang_returned"
            return {"attempt": job.attempt, "late": True}
        if payload.get("sigkill"):
            os.kill(os.getpid(), signal.SIGKILL)
        if payload.get("os_exit"):
            os._exit(17)
        if payload.get("system_exit"):
            outcome = "system_exit"
            raise SystemExit(3)
        fail = payload.get("fail")
        if fail is True or (isinstance(fail, int) and job.attempt <= fail):
            raise RuntimeError(f"probe failed on attempt {job.attempt}")
        outcome = "ok"
        return {"attempt": job.attempt}
    finally:
        _write(job, start, time.time(), outcome)


@handler("probe")
def probe(payload: Any, job: Any) -> Any:
    return _run(payload, job)


@handler("probe_timed", timeout=TIMEOUT)
def probe_timed(payload: Any, job: Any) -> Any:
    return _run(payload, job)
