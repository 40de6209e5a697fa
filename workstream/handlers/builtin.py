"""The built-in handlers: `echo` and `sleep` here, `email_send` and `webhook` in their own
modules; `builtin_handlers(email=..., webhook=...)` lists all four, configured, for the
server. The options are plain values: the composition root fills them from its settings,
so this layer never reads configuration (nor imports it)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from workstream.handlers import Handler, HandlerTable, default_table, import_handler_modules
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


@dataclass(frozen=True)
class EmailOptions:
    """`email_send`'s configuration (settings OUTBOX_DIR and SMTP_*)."""

    outbox_dir: str = "data/outbox"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str = "workstream@localhost"
    smtp_starttls: bool = False
    smtp_tls: bool = False


@dataclass(frozen=True)
class WebhookOptions:
    """`webhook`'s destination policy (settings WEBHOOK_ALLOW_HOSTS, WEBHOOK_DENY_NETWORKS):
    host names, addresses or networks it may reach although private, and networks it must
    never reach. The defaults refuse every non-public address."""

    allow_hosts: tuple[str, ...] = ()
    deny_networks: tuple[str, ...] = ()


def builtin_handlers(
    *, email: EmailOptions | None = None, webhook: WebhookOptions | None = None
) -> list[Handler]:
    """echo, sleep, email_send and webhook, configured here once, so the handlers never
    read global configuration while running. Raises ConfigError for a bad option (an
    invalid SMTP_FROM, a login without TLS, a malformed allow or deny entry)."""
    email = email or EmailOptions()
    webhook = webhook or WebhookOptions()
    return [
        *HANDLERS,
        make_email_handler(
            outbox_dir=email.outbox_dir,
            smtp_host=email.smtp_host,
            smtp_port=email.smtp_port,
            smtp_user=email.smtp_user,
            smtp_password=email.smtp_password,
            smtp_from=email.smtp_from,
            smtp_starttls=email.smtp_starttls,
            smtp_tls=email.smtp_tls,
        ),
        make_webhook_handler(allow_hosts=webhook.allow_hosts, deny_networks=webhook.deny_networks),
    ]


def handler_table(
    job_handlers: Sequence[str],
    *,
    email: EmailOptions | None = None,
    webhook: WebhookOptions | None = None,
) -> HandlerTable:
    """The table a server (or a worker process) runs: the built-ins first, then what the
    JOB_HANDLERS modules register, which may replace them."""
    import_handler_modules(job_handlers)
    table = HandlerTable(builtin_handlers(email=email, webhook=webhook))
    for job_type in default_table.types():
        registered = default_table.get(job_type)
        if registered is not None:
            table.add(registered)
    return table
