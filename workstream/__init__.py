"""WorkStream: a durable job queue server.

The public API for code that runs inside WorkStream (handlers, worker middleware,
extensions) and code that talks to it (the client)::

    from workstream import handler, Client, Snooze, RateLimited
    from workstream import ExtensionContext, JobEvents, Middleware, Call, Setting
"""

from workstream.actors.events import JobEvents
from workstream.client import (
    ApiError,
    Client,
    NotFoundError,
    QueueFullError,
    ServerUnreachable,
    UnauthorizedError,
    WaitTimeout,
)
from workstream.converters import Setting
from workstream.errors import ConfigError, WorkStreamError
from workstream.extensions import ExtensionContext
from workstream.handlers import handler
from workstream.handlers.middleware import Call, Middleware
from workstream.jobs import events
from workstream.jobs.deferral import RateLimited, Snooze
from workstream.jobs.events import JobEvent
from workstream.jobs.model import Job, JobContext, JobStatus
from workstream.jobs.spec import JobSpec

__all__ = [
    "ApiError",
    "Call",
    "Client",
    "ConfigError",
    "ExtensionContext",
    "Job",
    "JobContext",
    "JobEvent",
    "JobEvents",
    "JobSpec",
    "JobStatus",
    "Middleware",
    "NotFoundError",
    "QueueFullError",
    "RateLimited",
    "ServerUnreachable",
    "Setting",
    "Snooze",
    "UnauthorizedError",
    "WaitTimeout",
    "WorkStreamError",
    "events",
    "handler",
]
__version__ = "0.1.0"
