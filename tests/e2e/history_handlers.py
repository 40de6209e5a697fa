"""Handlers for the attempt-history end-to-end tests (JOB_HANDLERS): `flaky` fails its
first two attempts from a nested call (so its traceback has frames to show), then
completes; `exit_once` kills its worker process on the first attempt."""

from __future__ import annotations

import os
from typing import Any

from workstream import handler


def _check_disk(attempt: int) -> None:
    raise RuntimeError(f"Disk full on attempt {attempt}")


@handler("flaky")
def flaky(payload: Any, job: Any) -> Any:
    if job.attempt <= 2:
        _check_disk(job.attempt)
    return {"attempt": job.attempt}


@handler("exit_once")
def exit_once(payload: Any, job: Any) -> Any:
    if job.attempt == 1:
        os._exit(1)
    return {"attempt": job.attempt}


@handler("spin_once", timeout=1)
def spin_once(payload: Any, job: Any) -> Any:
    """Spins past its timeout on the first attempt (process mode only: a thread cannot be
    stopped)."""
    while job.attempt == 1:
        pass
    return {"attempt": job.attempt}
