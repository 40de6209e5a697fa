"""Handlers: the Python callables that run jobs, looked up by job type in a `HandlerTable`.

    from workstream import handler

    @handler("resize_image", timeout=60)
    def resize(payload, job):
        ...
        return {"width": 640}          # JSON-able; becomes the job's result

`@handler` registers into `default_table`, which the server copies at start-up after it
has imported the modules named in `JOB_HANDLERS`.

A handler may also declare a periodic schedule for its type (docs/scheduling.md):

    @handler("report", schedule="0 * * * *", timezone="Europe/Paris")

`schedule` is a cron expression (5 fields, or 6 with seconds first) or `@every 30s`;
`schedule_payload` is the payload of each scheduled job. They are checked at start-up.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from workstream.errors import ConfigError, InvalidPayload, UnknownJobType
from workstream.jobs.limits import is_job_type
from workstream.jobs.model import JobContext
from workstream.jobs.types import TypeLimits

log = logging.getLogger(__name__)

HandlerFn = Callable[[Any, JobContext], Any]
Validator = Callable[[Any], None]


@dataclass(frozen=True)
class Handler:
    """A registered handler. `timeout` (seconds) bounds one attempt; `validate` checks a
    payload at submission and raises ValueError with a message for the client."""

    type: str
    fn: HandlerFn
    timeout: float | None = None
    validate: Validator | None = None
    # A periodic schedule for this type (checked by workstream.scheduling at start-up).
    schedule: str | None = None
    timezone: str | None = None
    schedule_payload: Any = None
    # max_concurrency, concurrency_key, rate_limit (jobs.throttle applies them at claims).
    limits: TypeLimits = field(default_factory=TypeLimits)


class HandlerTable:
    """Job type -> Handler. Written at start-up, read by workers and admission."""

    def __init__(self, handlers: Iterable[Handler] = ()) -> None:
        self._handlers: dict[str, Handler] = {}
        for item in handlers:
            self.add(item)

    def add(self, item: Handler) -> None:
        if not is_job_type(item.type):
            raise ValueError(f"invalid job type name {item.type!r}")
        if item.timeout is not None and not item.timeout > 0:
            raise ValueError(f"handler {item.type!r}: timeout must be positive")
        if item.schedule is None and (
            item.timezone is not None or item.schedule_payload is not None
        ):
            raise ValueError(
                f"handler {item.type!r}: timezone and schedule_payload go with schedule"
            )
        if item.schedule is not None and not isinstance(item.schedule, str):
            raise ValueError(f"handler {item.type!r}: schedule must be a cron expression")
        self._handlers[item.type] = item

    def register(
        self,
        job_type: str,
        *,
        timeout: float | None = None,
        validate: Validator | None = None,
        schedule: str | None = None,
        timezone: str | None = None,
        schedule_payload: Any = None,
        max_concurrency: int | None = None,
        concurrency_key: str | None = None,
        rate_limit: str | None = None,
    ) -> Callable[[HandlerFn], HandlerFn]:
        try:
            limits = TypeLimits.build(
                max_concurrency=max_concurrency,
                concurrency_key=concurrency_key,
                rate_limit=rate_limit,
            )
        except ValueError as exc:
            raise ValueError(f"handler {job_type!r}: {exc}") from None

        def decorator(fn: HandlerFn) -> HandlerFn:
            self.add(
                Handler(
                    job_type,
                    fn,
                    timeout,
                    validate,
                    schedule=schedule,
                    timezone=timezone,
                    schedule_payload=schedule_payload,
                    limits=limits,
                )
            )
            return fn

        return decorator

    def limits(self) -> dict[str, TypeLimits]:
        """Job type -> the limits its handler was registered with."""
        return {name: item.limits for name, item in self._handlers.items()}

    def get(self, job_type: str) -> Handler | None:
        return self._handlers.get(job_type)

    def types(self) -> list[str]:
        return sorted(self._handlers)

    def scheduled(self) -> list[Handler]:
        """The handlers that declare a schedule, by type."""
        return [self._handlers[name] for name in self.types() if self._handlers[name].schedule]

    def check_submission(self, job_type: str, payload: Any, index: int | None = None) -> None:
        """Refuse, at submission, a job that could never run: unknown type or a payload its
        handler's validator rejects."""
        where = "" if index is None else f"jobs[{index}]: "
        item = self._handlers.get(job_type)
        if item is None:
            known = ", ".join(self.types()) or "none"
            raise UnknownJobType(f"{where}no handler for type {job_type!r} (known types: {known})")
        if item.validate is not None:
            try:
                item.validate(payload)
            except ValueError as exc:
                raise InvalidPayload(f"{where}payload for {job_type!r}: {exc}") from None
            except Exception as exc:  # a validator that trips over odd input (payload["x"])
                log.warning(
                    "validator for %r raised %s",
                    job_type,
                    type(exc).__name__,
                    exc_info=True,
                    extra={"event": "validator_error"},
                )
                raise InvalidPayload(
                    f"{where}payload for {job_type!r} was refused by its validator "
                    f"({type(exc).__name__})"
                ) from None


default_table = HandlerTable()


def handler(
    job_type: str,
    *,
    timeout: float | None = None,
    validate: Validator | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    schedule_payload: Any = None,
    max_concurrency: int | None = None,
    concurrency_key: str | None = None,
    rate_limit: str | None = None,
) -> Callable[[HandlerFn], HandlerFn]:
    """Register `fn(payload, job)` as the handler for `job_type`. `max_concurrency`: at
    most this many of the type run at once on all nodes together (per value of the payload
    field `concurrency_key` if given); `rate_limit` ("10/s", "100/m", "5000/h"): at most
    so many starts per period on all nodes. With `schedule`, a job of this type (payload
    `schedule_payload`) is also submitted at each of its slots, read in `timezone`
    (default UTC). See docs/scheduling.md."""
    return default_table.register(
        job_type,
        timeout=timeout,
        validate=validate,
        schedule=schedule,
        timezone=timezone,
        schedule_payload=schedule_payload,
        max_concurrency=max_concurrency,
        concurrency_key=concurrency_key,
        rate_limit=rate_limit,
    )


def import_module_for(setting: str, name: str) -> ModuleType:
    """Import a module a setting names. Any failure (not found, or an exception raised
    while it imports) is a ConfigError naming the setting and the module: exit 2."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"{setting}: cannot import module {name!r}: {exc}") from None
    except Exception as exc:
        raise ConfigError(
            f"{setting}: module {name!r} failed while importing: {type(exc).__name__}: {exc}"
        ) from None


def import_handler_modules(names: Iterable[str]) -> None:
    """Import the modules named in JOB_HANDLERS; each registers its handlers on import."""
    for name in names:
        import_module_for("JOB_HANDLERS", name)
