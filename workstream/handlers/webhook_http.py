"""One HTTP POST to an address that was checked, within one deadline.

The `webhook` handler's transport, kept apart from its payload rules. `http.client` is used
over a socket this module connected itself, so the connection goes to the address that
`netguard` checked and not to whatever the name resolves to a moment later; for `https`,
TLS still checks the certificate against the host name (SNI and host name verification).

One deadline covers the whole request: resolving, connecting, the TLS handshake, sending
and reading the answer. Socket timeouts alone bound each read, not their sum (a receiver
sending a byte every few seconds would hold the call for ever), so a watchdog timer cuts
the connection when the deadline passes.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from workstream.handlers.netguard import IPAddress

MAX_BODY_BYTES_READ = 8000  # of an answer; the rest is never read (it may be huge)


class ConnectFailed(Exception):
    """No connection (or no TLS session) could be set up; the request was not sent."""


class Timeout(Exception):
    """The deadline passed after the connection was set up."""


class BadAnswer(Exception):
    """The receiver answered something that is not HTTP, or broke the connection."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    charset: str | None


class Deadline:
    """The time left out of a fixed budget, on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return max(self._end - time.monotonic(), 0.0)


class _Watchdog:
    """Shuts the connection down when the deadline passes, which ends any read or write
    in progress. It works on its own duplicate of the socket's descriptor, so the number
    can never refer to another file by then; `stop` is called before the socket closes."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.fired = False
        self._handle: socket.socket | None = sock.dup()
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.name = "webhook-deadline"
        self._timer.start()

    def _cut(self) -> None:
        with self._lock:
            if self._handle is None:
                return
            self.fired = True
            with contextlib.suppress(OSError):
                self._handle.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()


def connect(addresses: Sequence[IPAddress], port: int, deadline: Deadline) -> socket.socket:
    """A TCP connection to the first of `addresses` that answers, in the time left."""
    errors: list[str] = []
    for address in addresses:
        left = deadline.left()
        if left <= 0:
            errors.append("deadline passed")
            break
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(left)
            sock.connect((str(address), port))
        except OSError as exc:
            sock.close()
            errors.append(f"{address}: {exc or type(exc).__name__}")
            continue
        return sock
    raise ConnectFailed("; ".join(errors) or "no address")


def post(
    sock: socket.socket,
    *,
    tls: ssl.SSLContext | None,
    host: str,
    host_header: str,
    target: str,
    headers: dict[str, str],
    data: bytes,
    read_body: bool,
    deadline: Deadline,
) -> Answer:
    """POST `data` over the connected `sock` (wrapped in TLS for `host` when `tls` is
    given) and read the answer's status, and its first bytes when `read_body`. Always
    closes the socket. Raises ConnectFailed (TLS), Timeout or BadAnswer."""
    watchdog = _Watchdog(sock, deadline.left())
    conn: http.client.HTTPConnection | None = None
    response: http.client.HTTPResponse | None = None
    stage = "tls"
    try:
        sock.settimeout(deadline.left() or 0.001)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
            sock.do_handshake()
        stage = "http"
        conn = http.client.HTTPConnection(host, timeout=deadline.left() or 0.001)
        conn.sock = sock  # already connected: http.client never resolves the name itself
        conn.putrequest("POST", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host_header)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        response = conn.getresponse()
        body = response.read(MAX_BODY_BYTES_READ) if read_body else b""
        watchdog.stop()
        if watchdog.fired:  # the cut can look like the end of the headers or the body
            raise Timeout("deadline passed while reading the answer")
        return Answer(response.status, body, response.headers.get_content_charset())
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if watchdog.fired or isinstance(exc, TimeoutError):
            raise Timeout(str(exc) or type(exc).__name__) from None
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if stage == "tls":
            raise ConnectFailed(detail) from None
        raise BadAnswer(detail) from None
    finally:
        watchdog.stop()
        if response is not None:
            response.close()
        if conn is not None:
            conn.close()
        sock.close()
