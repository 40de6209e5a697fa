"""Handlers with scheduling limits, for the end-to-end scheduling tests (issue 13).

Each appends a line per start and per end to the ledger file named by SCHED_LEDGER (outside
WorkStream's database), so that the tests can check limits and order from what really ran,
on every node and in worker processes alike.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from workstream import RateLimited, Snooze, handler


def _node() -> int:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    in_child = spec is not None and spec.name == "workstream.proc.child"
    return os.getppid() if in_child else os.getpid()


def _record(job: Any, payload: Any, event: str) -> None:
    path = os.environ.get("SCHED_LEDGER")
    if not path:
        return
    line = json.dumps(
        {
            "job_id": job.id,
            "type": job.type,
            "attempt": job.attempt,
            "tenant": (payload or {}).get("tenant"),
            "tag": (payload or {}).get("tag"),
            "node": _node(),
            "event": event,
            "at": time.time(),
        }
    )
    with open(path, "a", encoding="utf-8") as ledger:
        ledger.write(line + "\n")
        ledger.flush()


def _run(payload: Any, job: Any) -> dict[str, Any]:
    _record(job, payload, "start")
    time.sleep(float((payload or {}).get("sleep", 0)))
    _record(job, payload, "end")
    return {"ok": True}


@handler("limited", max_concurrency=3)
def limited(payload: Any, job: Any) -> Any:
    return _run(payload, job)


@handler("per_tenant", max_concurrency=1, concurrency_key="tenant")
def per_tenant(payload: Any, job: Any) -> Any:
    return _run(payload, job)


@handler("rated", rate_limit="20/s")
def rated(payload: Any, job: Any) -> Any:
    return _run(payload, job)


@handler("ordered")
def ordered(payload: Any, job: Any) -> Any:
    return _run(payload, job)


@handler("snoozer")
def snoozer(payload: Any, job: Any) -> Any:
    """Snoozes (or says RateLimited) on its first run, completes on the next."""
    marker = Path(os.environ["SCHED_LEDGER"] + f".{job.id}")
    _record(job, payload, "start")
    if not marker.exists():
        marker.touch()
        seconds = float(payload.get("seconds", 1))
        if payload.get("rate_limited"):
            raise RateLimited(seconds)
        raise Snooze(seconds)
    _record(job, payload, "end")
    return {"ok": True}
