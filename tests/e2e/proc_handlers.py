"""Handlers the worker-process end-to-end tests load (JOB_HANDLERS): each misbehaves on its
first attempt only, so that the retry shows the server and the pool recovered.

Each attempt appends {job_id, attempt, pid} to the file PROBE_LEDGER names, so a test can
find which child runs a job (to kill it) without asking the server."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from workstream import handler

_kept: list[bytearray] = []  # memory a `hog` attempt keeps: module state is per process


def _note(job: Any) -> None:
    path = os.environ.get("PROBE_LEDGER")
    if path:
        with open(path, "a", encoding="utf-8") as ledger:
            ledger.write(json.dumps({"job_id": job.id, "attempt": job.attempt, "pid": os.getpid()}))
            ledger.write("\n")


@handler("spin", timeout=1)
def spin(payload: Any, job: Any) -> Any:
    _note(job)
    while job.attempt == 1:
        pass
    return {"attempt": job.attempt}


@handler("exit_once")
def exit_once(payload: Any, job: Any) -> Any:
    _note(job)
    if job.attempt == 1:
        os._exit(1)
    return {"attempt": job.attempt}


@handler("hold_once")
def hold_once(payload: Any, job: Any) -> Any:
    """Waits (to be killed from outside) on its first attempt."""
    _note(job)
    if job.attempt == 1:
        time.sleep(60)
    return {"attempt": job.attempt}


@handler("hog")
def hog(payload: Any, job: Any) -> Any:
    _note(job)
    _kept.append(bytearray(int(payload["mb"]) * 1024 * 1024))
    return {"pid": os.getpid()}


@handler("nap")
def nap(payload: Any, job: Any) -> Any:
    _note(job)
    time.sleep(float(payload.get("seconds", 0.2)))
    return {"pid": os.getpid()}
