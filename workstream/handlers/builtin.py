"""The built-in handlers: `echo` and `sleep` here, `email_send` and `webhook` in their own
modules; `builtin_handlers(settings)` lists all four, configured, for the server."""

from __future__ import annotations

import math
import time
from typing import Any

from workstream.config import Settings
from workstream.handlers import Handler
from workstream.handlers.email import make_email_handler
from workstream.handlers.webhook import make_webhook_handler
from workstream.jobs.model import JobContext

MAX_SLEEP_SECONDS = 3600.0


def echo(payload: Any, job: JobContext) -> Any:
    """Return the payload: the job's result is what was sent."""
    return payload


def _sleep_seconds(payload: Any) -> float:
    if not isinstance(payload, dict):
        raise ValueError('expected an object like {"seconds": 1.5}')
    seconds = payload.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("'seconds' must be a number")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"'seconds' must be from 0 to {MAX_SLEEP_SECONDS:g}")
    return float(seconds)


def validate_sleep(payload: Any) -> None:
    _sleep_seconds(payload)


def sleep(payload: Any, job: JobContext) -> dict[str, float]:
    """Sleep for payload["seconds"]; useful to see workers, capacity and shutdown at work."""
    seconds = _sleep_seconds(payload)
    time.sleep(seconds)
    return {"slept": seconds}


HANDLERS = (
    Handler("echo", echo),
    Handler("sleep", sleep, validate=validate_sleep),
)


def builtin_handlers(settings: Settings) -> list[Handler]:
    """echo, sleep, email_send and webhook; email_send takes its SMTP_* and OUTBOX_DIR
    settings here, so the handlers never read global configuration while running."""
    return [
        *HANDLERS,
        make_email_handler(
            outbox_dir=settings.outbox_dir,
            smtp_host=settings.smtp_host,
            smtp_port=settings.smtp_port,
            smtp_user=settings.smtp_user,
            smtp_password=settings.smtp_password,
            smtp_from=settings.smtp_from,
            smtp_starttls=settings.smtp_starttls,
        ),
        make_webhook_handler(),
    ]
