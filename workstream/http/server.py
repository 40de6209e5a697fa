"""The HTTP server: waitress, with its limits set on purpose and a stop that really stops.

The only module that imports waitress. Added to it:

* **JSON errors.** What waitress answers itself (431, 413, 400, 500) gets the API's error
  body and an `X-Request-Id` (`JsonErrorTask`; codes and messages in `server_errors.py`),
  and no `Server` header is sent at all.
* **Deadlines for reading a request.** Request headers must be complete within
  `header_timeout` of their first byte, and near `connection_limit` connections without a
  complete request make room (slowloris; the rules are in `server_deadlines.py`).
* **Body limit on the decoded body.** Waitress counts the bytes of chunked framing against
  its body limit, so a body of exactly 1 MiB sent chunked would be refused. Waitress's
  limit is set to twice the API's (a bound on memory still), and the application enforces
  the exact limit on the decoded body (`workstream/http/body.py`), 413 past it.
* **No spinning loop.** While a request is being answered, its connection is not
  offered to `poll()` as writable: the task thread sends the response itself (see
  `JsonErrorChannel.writable`). Waitress's own test made the loop spin on every
  connection whose response was being sent, and at 64 connections that cut submissions
  to a fifth.
* **A draining, bounded stop.** Waitress's loop runs until its socket map is empty, and an
  idle keep-alive connection keeps it non-empty. `stop()` hands a closure to the loop
  thread through waitress's trigger (the loop's wake-up pipe); inside the loop, so that no
  socket is closed under a `poll()` running in another thread, it closes the listening
  sockets and every idle connection. Connections with a request in progress are left to
  finish: their response carries `Connection: close` and the connection closes once it is
  sent, so a client whose job was stored hears its 201. At the deadline whatever is left
  is closed. The worker threads are then shut down, and only after that is the trigger
  itself closed: worker threads write to it when they finish a request, and a write to a
  closed descriptor number could land in whatever file the process opened next.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import RequestEntityTooLarge

from workstream.http.body import MAX_BODY_BYTES
from workstream.http.errors import error_body
from workstream.http.middleware import REQUEST_ID_HEADER, new_request_id
from workstream.http.server_deadlines import HEADER_TIMEOUT_SECONDS, overstayed, under_pressure
from workstream.http.server_errors import describe_server_error

logger = logging.getLogger("workstream.http")

MAX_HEADER_BYTES = 64 * 1024
DEFAULT_BACKLOG = 2048
LOOP_TIMEOUT_SECONDS = 1


class JsonErrorTask(ErrorTask):
    """Waitress's own error responses, as `{"error", "code"}` JSON naming no library."""

    def execute(self) -> None:
        error = self.request.error  # type: ignore[attr-defined]  # types-waitress: it is the parser
        adjustments = self.channel.server.adj
        max_body = getattr(self.channel, "max_body", adjustments.max_request_body_size - 1)
        status, reason, code, message = describe_server_error(
            error.code,
            error.reason,
            max_header_bytes=adjustments.max_request_header_size,
            max_body=max_body,
        )
        request_id = new_request_id()
        if status >= 500:
            # A 500 here means the app failed to answer (waitress logged the traceback).
            logger.error(
                "the HTTP server answered %d itself",
                status,
                extra={"event": "http_error", "request_id": request_id},
            )
        body = error_body(message, code, request_id if status >= 500 else None)
        self.status = f"{status} {reason}"
        self.response_headers.extend(  # type: ignore[attr-defined]  # types-waitress: it is a list
            [("Content-Type", "application/json"), (REQUEST_ID_HEADER, request_id)]
        )
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class DrainingAwareTask(WSGITask):
    """Once the server drains, every response closes its connection after it is sent."""

    def build_response_header(self) -> bytes:
        draining = getattr(self.channel.server, "workstream_draining", None)
        if draining is not None and draining.is_set():
            self.set_close_on_finish()
        return super().build_response_header()


class JsonErrorChannel(HTTPChannel):
    """Waitress's channel with JSON errors, and the time its current request began."""

    error_task_class = JsonErrorTask
    task_class = DrainingAwareTask
    # The request being received (waitress's parser) and when its first byte came; both
    # are only touched on the loop thread (`received` and the maintenance run there).
    _tracked: Any = None
    request_began: float | None = None
    max_body: int  # set on each server's subclass (`_channel_class`)

    def writable(self) -> bool:
        """Waitress's test, except while a request is being answered: its task thread
        then sends the response itself (waitress's `send_bytes` is 1, so every write is
        flushed at once) and pulls the trigger when it ends, so the loop has nothing to
        do for this connection until then. Waitress says "writable" whenever the output
        buffer holds bytes, and the task holds the buffer's lock while it sends; `poll()`
        then returns at once, `handle_write` cannot take the lock, and the loop thread
        spins, holding the GIL the task thread needs to finish. Measured at 64
        connections: 33,000 empty loop passes a second, the loop thread at 89% CPU,
        submissions down to 150-280 a second from 900-1,000 at 16 connections.
        Past the high watermark the task waits for the loop to drain the buffer, so the
        loop must write then, as waitress does."""
        if (
            self.requests
            and not (self.will_close or self.close_when_flushed)
            and self.total_outbufs_len <= self.adj.outbuf_high_watermark
        ):
            return False
        return bool(super().writable())

    def received(self, data: bytes) -> bool:
        result = super().received(data)
        current = self.request  # None once every byte received so far formed requests
        if current is None:
            self._tracked, self.request_began = None, None
        elif current is not self._tracked:
            self._tracked, self.request_began = current, time.time()
        return result


def _channel_class(max_body: int) -> type[JsonErrorChannel]:
    """The channel class of one server: its parser refuses a declared Content-Length over
    `max_body` as soon as the headers are in (waitress's own limit is twice that, for
    chunked bodies; see the module doc)."""

    class BoundedParser(HTTPRequestParser):
        def received(self, data: bytes) -> int:
            consumed = super().received(data)
            if (
                self.headers_finished
                and not self.completed
                and not self.chunked
                and self.content_length > max_body
            ):
                self.error = RequestEntityTooLarge(f"exceeds max_body of {max_body}")
                self.completed = True
            return consumed

    class Channel(JsonErrorChannel):
        parser_class = BoundedParser

    Channel.max_body = max_body
    return Channel


def _expired(channel: HTTPChannel, now: float, header_timeout: float, pressure: bool) -> bool:
    """Whether a connection has overstayed (`server_deadlines.py`); never one being served."""
    if channel.requests or channel.total_outbufs_len:
        return False  # a request is being answered or its response sent
    partial = channel.request
    began = getattr(channel, "request_began", None) if partial is not None else None
    return overstayed(
        now,
        began=began,
        headers_finished=partial is None or partial.headers_finished,
        last_activity=channel.last_activity,
        header_timeout=header_timeout,
        pressure=pressure,
    )


def _install_deadlines(listener: BaseWSGIServer, header_timeout: float) -> None:
    """Extend the listener's periodic maintenance (waitress closes idle connections
    there) with the request deadlines. (types-waitress says `now` is an int, and has
    neither `_map` nor `active_channels` as the dict it is.)"""
    idle_maintenance = listener.maintenance
    limit = listener.adj.connection_limit

    def maintenance(now: float) -> None:
        idle_maintenance(now)  # type: ignore[arg-type]
        pressure = under_pressure(len(listener._map), limit)  # type: ignore[attr-defined]
        for channel in list(listener.active_channels.values()):  # type: ignore[attr-defined]
            if not channel.will_close and _expired(channel, now, header_timeout, pressure):
                channel.will_close = True  # the loop closes it on its next pass

    listener.maintenance = maintenance  # type: ignore[method-assign]  # on purpose


def _is_idle(channel: HTTPChannel) -> bool:
    """No request being answered and nothing left to send (a half-received request counts
    as idle: nobody has been promised anything)."""
    with channel.requests_lock:  # type: ignore[attr-defined]  # not in types-waitress
        return not channel.requests and not channel.total_outbufs_len


class HttpServer:
    """Serves a WSGI app: `start()` binds, `serve()` (or `serve_in_thread()`) runs the
    loop, `stop(timeout)` ends it promptly, open connections or not."""

    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int,
        threads: int,
        connection_limit: int,
        channel_timeout: float,
        max_body_bytes: int = MAX_BODY_BYTES,
        backlog: int = DEFAULT_BACKLOG,
        header_timeout: float = HEADER_TIMEOUT_SECONDS,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._max_body_bytes = max_body_bytes
        self._header_timeout = header_timeout
        timeout = max(1, math.ceil(channel_timeout))  # waitress takes whole seconds
        self._adjustments: dict[str, Any] = {
            "threads": threads,
            "connection_limit": connection_limit,
            "channel_timeout": timeout,
            # How often connections are checked for the idle timeout and the request
            # deadlines (a cheap pass over the open connections).
            "cleanup_interval": 1,
            "max_request_header_size": MAX_HEADER_BYTES,
            # Waitress counts chunk framing too, and refuses a body of exactly this size:
            # twice the API's limit bounds memory, the app enforces the exact limit.
            "max_request_body_size": 2 * max_body_bytes + 1,
            "backlog": backlog,
            "ident": "",  # no Server header: the library is nobody's business
            "expose_tracebacks": False,
            "asyncore_use_poll": True,  # select() fails past 1024 file descriptors
            "asyncore_loop_timeout": LOOP_TIMEOUT_SECONDS,
        }
        self._map: dict[int, Any] = {}
        self._server: Any = None
        self._trigger: Any = None
        self._port_bound: int | None = None
        self._lock = threading.Lock()
        self._stop_requested = False
        self._stopped = False
        self._loop_running = False
        self._connections_closed = threading.Event()
        self._loop_done = threading.Event()
        self._draining = threading.Event()  # responses now close their connections
        self._drain_begun = False  # (loop thread) listeners and idle connections closed

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system when asked for port 0)."""
        if self._port_bound is None:
            raise RuntimeError("the server has not been started")
        return self._port_bound

    def start(self) -> int:
        """Bind the listening socket(s) and return the port. Connections wait in the
        backlog until `serve()` runs. (A host name that resolves to several addresses
        gets one socket each; with port 0 they may get different ports, and the first is
        returned.)"""
        if self._server is not None:
            raise RuntimeError("the server is already started")
        self._server = create_server(
            self._app, map=self._map, host=self._host, port=self._port, **self._adjustments
        )
        listeners = self._listeners()
        channel_class = _channel_class(self._max_body_bytes)
        for listener in listeners:
            listener.channel_class = channel_class
            listener.workstream_draining = self._draining  # type: ignore[attr-defined]  # ours
            _install_deadlines(listener, self._header_timeout)
        # Every listener's trigger wakes the same loop; one is enough to reach it.
        self._trigger = listeners[0].trigger
        # effective_port is not in types-waitress.
        self._port_bound = int(listeners[0].effective_port)  # type: ignore[attr-defined]
        return self._port_bound

    def serve(self) -> None:
        """Run the loop in this thread until `stop()`."""
        if self._server is None:
            raise RuntimeError("start() the server before serving")
        with self._lock:
            if self._stop_requested:
                return
            self._loop_running = True
        try:
            # One poll at a time, so the loop ends as soon as the connections are closed;
            # the triggers stay in the map (see `stop`), so it is never empty before that.
            while self._map and not self._connections_closed.is_set():
                wasyncore.loop(timeout=LOOP_TIMEOUT_SECONDS, use_poll=True, map=self._map, count=1)
                if self._drain_begun:
                    self._close_idle_channels()  # those whose request has been answered
                    if not self._channels():
                        self._connections_closed.set()
        finally:
            self._loop_done.set()

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve, name="workstream-http", daemon=True)
        thread.start()
        return thread

    def close_after_each_response(self) -> None:
        """From now on every response closes its connection once sent, while the server
        goes on listening: during a shutdown's job drain, clients still get their 503s
        and `/health` answers, and none keeps a connection to a server about to go."""
        self._draining.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop listening and close idle connections at once; let requests in progress
        finish and send their responses, up to `timeout` seconds; then close what is left
        and stop the worker threads. Returns False if something was still running at the
        deadline (worker threads are daemons: they cannot keep the process alive).
        Calling it again does nothing."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._server is None or self._stopped:
                return True
            self._stopped = self._stop_requested = True
            loop_running = self._loop_running
        self._draining.set()
        drained = True
        if loop_running:
            self._trigger.pull_trigger(self._begin_drain)
            drained = self._loop_done.wait(max(0.0, deadline - time.monotonic()))
            if not drained:
                self._trigger.pull_trigger(self._close_connections)
                self._loop_done.wait(LOOP_TIMEOUT_SECONDS + 1)
        loop_stopped = self._loop_done.is_set() or not loop_running
        if loop_stopped and not self._connections_closed.is_set():
            # The loop never ran, or died before it could close them: no loop runs, so
            # closing here is safe.
            self._close_connections()
        if not loop_stopped:
            logger.warning("the HTTP loop did not stop in time", extra={"event": "http_stop"})
        dispatcher = self._server.task_dispatcher
        dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, deadline - time.monotonic()))
        workers_stopped = not dispatcher.threads
        if loop_stopped and workers_stopped:
            self._close_triggers()  # nothing can pull them any more
        return drained and loop_stopped and workers_stopped

    def _begin_drain(self) -> None:
        """(Loop thread.) Close the listening sockets and every idle connection; the loop
        closes the busy ones as they become idle (see `serve`)."""
        for listener in self._listeners():
            with contextlib.suppress(OSError):
                wasyncore.dispatcher.close(listener)
        self._close_idle_channels()
        self._drain_begun = True

    def _close_idle_channels(self) -> None:
        for channel in self._channels():
            if _is_idle(channel):
                with contextlib.suppress(OSError):
                    channel.handle_close()

    def _channels(self) -> list[HTTPChannel]:
        return [item for item in self._map.values() if isinstance(item, HTTPChannel)]

    def _close_connections(self) -> None:
        """Close the listening sockets and every connection, but not the triggers."""
        for dispatcher in list(self._map.values()):
            try:
                if isinstance(dispatcher, HTTPChannel):
                    # handle_close also wakes a worker thread waiting to flush output.
                    dispatcher.handle_close()
                elif isinstance(dispatcher, BaseWSGIServer):
                    # The base close: the server's own close() would close its trigger too.
                    wasyncore.dispatcher.close(dispatcher)
            except OSError:
                pass
        self._connections_closed.set()

    def _close_triggers(self) -> None:
        for dispatcher in list(self._map.values()):
            dispatcher.close()
        self._map.clear()

    def _listeners(self) -> list[BaseWSGIServer]:
        return [item for item in self._map.values() if isinstance(item, BaseWSGIServer)]
