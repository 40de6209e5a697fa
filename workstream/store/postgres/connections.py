"""How the store connects, and why every wait is bounded.

`connect_timeout` bounds connecting; `statement_timeout`, `lock_timeout` and
`idle_in_transaction_session_timeout` are set for every session (the last one frees the
rows and locks of a node that stops mid-transaction, e.g. under SIGSTOP); TCP settings drop
a peer that vanished without a word. `synchronous_commit` is left on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

Connection = psycopg.Connection[Any]


def ms(seconds: float) -> int:
    """Seconds as PostgreSQL's milliseconds (at least one: zero would mean no limit)."""
    return max(1, round(seconds * 1000))


def conninfo(
    url: str,
    *,
    connect_timeout: float,
    statement_timeout: float,
    lock_timeout: float,
    idle_in_transaction_timeout: float,
) -> str:
    """The URL with the store's session settings and bounds added."""
    options = (
        f"-c statement_timeout={ms(statement_timeout)} "
        f"-c lock_timeout={ms(lock_timeout)} "
        f"-c idle_in_transaction_session_timeout={ms(idle_in_transaction_timeout)}"
    )
    return make_conninfo(
        url,
        connect_timeout=max(1, round(connect_timeout)),
        options=options,
        application_name="workstream",
        # A peer that vanished without a word (host down, network cut): sent data left
        # unacknowledged closes the connection after this long, and an idle connection
        # (the listener) is probed by keepalives and dropped within about 11 s.
        tcp_user_timeout=ms(max(connect_timeout, statement_timeout) + 2.0),
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
    )


def connect(info: str) -> Connection:
    """A connection of its own (the writer, the listener): autocommit, BEGIN is explicit."""
    return psycopg.connect(info, autocommit=True)


def reader_pool(
    info: str, *, size: int, timeout: float, check: Callable[[Connection], None]
) -> ConnectionPool[Connection]:
    """The pool for reads from any thread: autocommit, each connection checked (`check`)
    when taken, so that one killed while idle is replaced instead of failing a read;
    getting one waits at most `timeout`. Opened in the background."""
    pool = ConnectionPool(
        info,
        min_size=1,
        max_size=size,
        timeout=timeout,
        kwargs={"autocommit": True},
        check=check,
        name="workstream-readers",
        open=False,
    )
    pool.open(wait=False)
    return pool
