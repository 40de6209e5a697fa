"""Handlers the end-to-end tests load into the real server with JOB_HANDLERS.

`probe` appends one line per attempt to the ledger file named by PROBE_LEDGER (outside
WorkStream's database), so tests can count executions independently of the server.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from workstream import handler


def _server_pid() -> int:
    """The WorkStream server's pid: this process's, or in a worker process its parent's."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    in_child = spec is not None and spec.name == "workstream.proc.child"
    return os.getppid() if in_child else os.getpid()


def _ledger(job: Any, outcome: str) -> None:
    path = os.environ.get("PROBE_LEDGER")
    if not path:
        return
    line = json.dumps(
        {
            "job_id": job.id,
            "attempt": job.attempt,
            "pid": _server_pid(),  # the node that ran it, in either worker mode
            "process": os.getpid(),
            "outcome": outcome,
            "at": time.time(),
        }
    )
    with open(path, "a", encoding="utf-8") as ledger:
        ledger.write(line + "\n")
        ledger.flush()
        os.fsync(ledger.fileno())


@handler("probe")
def probe(payload: Any, job: Any) -> Any:
    """Record the attempt, then behave as told: {"sleep": s, "fail": true, "exit": true}."""
    payload = payload or {}
    _ledger(job, "start")
    if payload.get("sleep"):
        time.sleep(float(payload["sleep"]))
    if payload.get("exit"):
        os._exit(17)  # the whole server dies mid-attempt
    if payload.get("fail"):
        raise RuntimeError(f"probe failed on attempt {job.attempt}")
    _ledger(job, "done")
    return {"attempt": job.attempt}


@handler("exit_hook")
def exit_hook(payload: Any, job: Any) -> Any:
    raise SystemExit(3)
