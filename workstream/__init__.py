"""WorkStream: a durable job queue server.

The public API for code that runs inside WorkStream (handlers) and code that talks to it
(the client)::

    from workstream import handler, Client
"""

from workstream.client import (
    ApiError,
    Client,
    NotFoundError,
    QueueFullError,
    ServerUnreachable,
    UnauthorizedError,
    WaitTimeout,
)
from workstream.errors import WorkStreamError
from workstream.handlers import handler
from workstream.jobs.model import Job, JobContext, JobStatus

__all__ = [
    "ApiError",
    "Client",
    "Job",
    "JobContext",
    "JobStatus",
    "NotFoundError",
    "QueueFullError",
    "ServerUnreachable",
    "UnauthorizedError",
    "WaitTimeout",
    "WorkStreamError",
    "handler",
]
__version__ = "0.1.0"
