"""Deadlines for reading a request: when the server closes a connection that sent none.

Waitress only closes a connection that has been silent for `channel_timeout`; a client that
trickles one header byte at a time (slowloris) keeps its connection, and a few hundred of
them fill `connection_limit`, after which nobody (a health check included) is served. So the
request headers must be complete within `header_timeout` of their first byte; and while the
open connections are near the limit, a connection that has had no complete request for
`PRESSURE_GRACE_SECONDS` (a trickling or stalled request, an idle keep-alive) is closed to
make room. A client that sends its request at once is never affected.

No waitress import here: this is the policy, `server.py` applies it in waitress's periodic
maintenance, and never to a connection whose request is being answered.
"""

from __future__ import annotations

# Request headers must arrive within this long of their first byte.
HEADER_TIMEOUT_SECONDS = 10.0
# Near the connection limit, connections without a complete request for this long go.
PRESSURE_GRACE_SECONDS = 1.0
# "Near": this share of connection_limit open.
PRESSURE_SHARE = 0.9


def under_pressure(open_count: int, connection_limit: int) -> bool:
    """Whether `open_count` open sockets are near the limit, so idle connections must go."""
    return open_count >= connection_limit * PRESSURE_SHARE


def overstayed(
    now: float,
    *,
    began: float | None,
    headers_finished: bool,
    last_activity: float,
    header_timeout: float,
    pressure: bool,
) -> bool:
    """Whether a connection with no request being answered should be closed. `began` is when
    the first byte of its incomplete request came (None: no request in progress),
    `headers_finished` whether that request's headers are complete, `last_activity` when the
    connection last sent or received anything."""
    if began is not None:
        if not headers_finished and now - began > header_timeout:
            return True
        return pressure and now - began > PRESSURE_GRACE_SECONDS
    return pressure and now - last_activity > PRESSURE_GRACE_SECONDS
