"""`workstream serve`: build everything from Settings, serve until a signal, stop in order.

Start: handlers (built-ins, then the JOB_HANDLERS modules) -> store -> engine (migrate,
recover, actors) -> HTTP port. Stop, on SIGTERM or SIGINT: refuse new jobs (503) -> stop
the HTTP server (closing keep-alive connections) -> the engine drains, gives back what is
still running, flushes and closes the store -> exit 0. A second signal during the drain
exits at once; whatever was running is recovered at the next start.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from workstream.config import Settings
from workstream.errors import ConfigError
from workstream.handlers import HandlerTable, default_table, import_handler_modules
from workstream.handlers.builtin import builtin_handlers
from workstream.http.app import create_app
from workstream.http.server import HttpServer
from workstream.service import Engine
from workstream.store import store_from_url

log = logging.getLogger("workstream.server")

# At shutdown, requests already being answered get this long to finish (new submissions
# get 503 at once, so they are quick); idle keep-alive connections are closed at once.
HTTP_DRAIN_SECONDS = 5.0


def check_bind(settings: Settings) -> None:
    """Refuse to serve an unauthenticated API beyond this machine unless asked to."""
    if settings.loopback_only() or settings.api_token or settings.allow_insecure_bind:
        return
    raise ConfigError(
        f"invalid HOST = {settings.host!r}: it is not a loopback address and API_TOKEN is not "
        "set; set API_TOKEN, or ALLOW_INSECURE_BIND=true to serve without authentication"
    )


def build_handlers(settings: Settings) -> HandlerTable:
    """Built-ins first; handlers registered by JOB_HANDLERS modules may replace them."""
    import_handler_modules(settings.job_handlers)
    table = HandlerTable(builtin_handlers(settings))
    for job_type in default_table.types():
        registered = default_table.get(job_type)
        if registered is not None:
            table.add(registered)
    return table


class Server:
    """The engine and its HTTP front, with signal-driven shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine(
            settings,
            store=store_from_url(settings.database_url),
            handlers=build_handlers(settings),
        )
        self.http: HttpServer | None = None
        self.port: int | None = None
        self._stop = threading.Event()
        self._signals = 0

    def start(self) -> int:
        check_bind(self.settings)
        self.engine.start()
        try:
            return self._open_port()
        except BaseException:
            self.engine.stop()
            raise

    def _open_port(self) -> int:
        app = create_app(self.engine, api_token=self.settings.api_token)
        self.http = HttpServer(
            app,
            host=self.settings.host,
            port=self.settings.port,
            threads=self.settings.http_threads,
            connection_limit=self.settings.http_connection_limit,
            channel_timeout=self.settings.http_channel_timeout,
        )
        self.port = self.http.start()
        log.info(
            "listening",
            extra={
                "event": "server_started",
                "url": f"http://{self.settings.host}:{self.port}",
                "pid": os.getpid(),
                "settings": self.settings.described(),
                "job_types": self.engine.handlers.types(),
            },
        )
        return self.port

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now", extra={"event": "forced_exit"})
            os._exit(1)
        self._stop.set()

    def serve_until_stopped(self) -> int:
        assert self.http is not None
        loop = threading.Thread(target=self.http.serve, name="http", daemon=True)
        loop.start()
        self._stop.wait()
        return self.shutdown()

    def shutdown(self) -> int:
        self.engine.begin_shutdown()
        if self.http is not None:
            self.http.stop(timeout=HTTP_DRAIN_SECONDS)
        self.engine.stop()
        return 0


def serve(settings: Settings) -> int:
    server = Server(settings)
    signal.signal(signal.SIGTERM, server.request_stop)
    signal.signal(signal.SIGINT, server.request_stop)
    server.start()
    return server.serve_until_stopped()
