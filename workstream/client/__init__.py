"""The Python client of the WorkStream HTTP API (SPEC sections 4 and 8); the CLI is built on it.

Standard library only: user programs import this to submit jobs, and a queue client should not
drag web frameworks or HTTP libraries into them. Each request opens its own connection, so a
`Client` holds no per-request state and may be shared between threads.

Errors follow one rule: an answer outside 2xx raises `ApiError` (or a subclass for the statuses
callers branch on), carrying the API's stable `code`; a transport failure raises
`ServerUnreachable`. Both are `WorkStreamError`s, so the CLI can map every failure by `code`.

Inside: `api.py` (`Client`), `transport.py` (one request over `http.client`), `errors.py`,
`links.py` (`Link` headers, for paging) and `waiting.py` (`Client.wait`'s polling).
"""

from workstream.client.api import DEFAULT_URL as DEFAULT_URL
from workstream.client.api import Client, Page
from workstream.client.errors import (
    ApiError,
    NotFoundError,
    QueueFullError,
    ServerUnreachable,
    UnauthorizedError,
    WaitTimeout,
)

__all__ = [
    "ApiError",
    "Client",
    "NotFoundError",
    "Page",
    "QueueFullError",
    "ServerUnreachable",
    "UnauthorizedError",
    "WaitTimeout",
]
