"""The composition root: the one module that builds the whole system from settings and
owns its start and stop.

Start: import the extension modules (a typo costs nothing yet) -> handlers (built-ins,
then JOB_HANDLERS) and WORKER_MIDDLEWARE -> open the store (lock, migrate) -> the actors
(Registry, Dispatcher with hand-out held, Workers, Sweeper, Ticker) -> each extension's
setup, in order -> recovery of what an earlier run left `processing`, and hand-out begins
-> the HTTP port. Stop, on SIGTERM or SIGINT: refuse new jobs (503; `/health` answers 503
`shutting_down`, and every response now closes its connection, but the port stays open)
-> drain running jobs, give back what still runs -> stop the HTTP server (idle keep-alive
connections at once, requests being answered within 5 s) -> stop the extensions' actors,
in reverse order -> stop the core actors -> close the store -> exit 0. A second signal
during the drain exits at once; what was running is recovered at the next start.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from types import FrameType

from workstream.actors.events import EventBus
from workstream.actors.gateway import Gateway
from workstream.actors.system import ActorSystem, ShutdownSummary, Tuning
from workstream.config import Settings, type_tables
from workstream.errors import ConfigError
from workstream.extensions import (
    ExtensionContext,
    LoadedExtension,
    load_extensions,
    run_setup,
    unclaimed_sections,
)
from workstream.handlers import HandlerTable
from workstream.handlers.builtin import EmailOptions, WebhookOptions, handler_table
from workstream.handlers.middleware import MiddlewareChain, load_middleware
from workstream.http.app import create_app
from workstream.http.server import HttpServer
from workstream.jobs.events import JOB_STARTED
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.throttle import Throttle
from workstream.jobs.types import TypeLimits
from workstream.logs import log_job_events
from workstream.metrics import Metrics
from workstream.proc.spec import ChildSpec
from workstream.scheduling import EXTENSION_NAME, Scheduling, load_schedules
from workstream.start_rate import StartRate
from workstream.store import store_from_url
from workstream.store.base import Store

log = logging.getLogger("workstream.server")
SIGNAL_POLL = 0.2  # seconds: how soon a signal delivered to another thread is acted on

# At shutdown, requests already being answered get this long to finish (new submissions
# get 503 at once, so they are quick); idle keep-alive connections are closed at once.
HTTP_DRAIN_SECONDS = 5.0


def new_owner_id() -> str:
    """A random id for this process's life: who holds a claimed job."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def check_bind(settings: Settings) -> None:
    """Refuse to serve an unauthenticated API beyond this machine unless asked to."""
    if settings.loopback_only() or settings.api_token or settings.allow_insecure_bind:
        return
    raise ConfigError(
        f"invalid HOST = {settings.host!r}: it is not a loopback address and API_TOKEN is not "
        "set; set API_TOKEN, or ALLOW_INSECURE_BIND=true to serve without authentication"
    )


def handler_options(settings: Settings) -> tuple[EmailOptions, WebhookOptions]:
    """The built-in handlers' settings, as the handlers layer takes them."""
    email = EmailOptions(
        outbox_dir=settings.outbox_dir,
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_user=settings.smtp_user,
        smtp_password=settings.smtp_password,
        smtp_from=settings.smtp_from,
        smtp_starttls=settings.smtp_starttls,
        smtp_tls=settings.smtp_tls,
    )
    webhook = WebhookOptions(
        allow_hosts=settings.webhook_allow_hosts, deny_networks=settings.webhook_deny_networks
    )
    return email, webhook


def build_handlers(settings: Settings) -> HandlerTable:
    """Built-ins first; handlers registered by JOB_HANDLERS modules may replace them."""
    email, webhook = handler_options(settings)
    return handler_table(settings.job_handlers, email=email, webhook=webhook)


def type_limits(settings: Settings, handlers: HandlerTable) -> dict[str, TypeLimits]:
    """Each type's limits: its handler's registration, with its `[types.<name>]` table of
    the config file over it. A bad value is a ConfigError naming the table (exit 2)."""
    limits = handlers.limits()
    for name, table in type_tables(settings).items():
        try:
            limits[name] = limits.get(name, TypeLimits()).merged(table)
        except ValueError as exc:
            raise ConfigError(f"config file {settings.config_path}: [types.{name}] {exc}") from None
    return limits


def child_spec(settings: Settings) -> ChildSpec:
    """What every worker process is told (its name and thread count are the pool's)."""
    email, webhook = handler_options(settings)
    return ChildSpec(
        name="worker",
        threads=1,
        job_handlers=settings.job_handlers,
        worker_middleware=settings.worker_middleware,
        email=email,
        webhook=webhook,
        log_level=settings.log_level,
        log_format=settings.log_format,
    )


def builtin_extension(scheduling: Scheduling) -> LoadedExtension:
    """The scheduler, loaded like a user's extension under the name `schedules`."""
    extension = LoadedExtension("workstream.scheduling", scheduling.setup)
    extension.name = EXTENSION_NAME
    return extension


class System:
    """Everything, built from settings. Tests inject the store, handlers, clock and ids,
    and may leave the HTTP port closed (`serve_http=False`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        handlers: HandlerTable | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        owner: str | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
        metrics: Metrics | None = None,
        serve_http: bool = True,
    ) -> None:
        self.settings = settings
        self.extensions: list[LoadedExtension] = load_extensions(settings.extensions)
        self.store = store or store_from_url(settings.database_url)
        self.handlers = handlers or build_handlers(settings)
        self.middleware = MiddlewareChain(load_middleware(settings.worker_middleware))
        self.owner = owner or new_owner_id()
        self.metrics = metrics or Metrics(node=self.owner)
        self.events = EventBus()
        self.clock = clock
        self.actors = ActorSystem(
            Tuning(
                worker_count=settings.worker_count,
                job_queue_capacity=settings.job_queue_capacity,
                sweeper_interval=settings.sweeper_interval,
                lease_duration=settings.lease_duration,
                max_retries=settings.max_retries,
                shutdown_timeout=settings.shutdown_timeout,
                worker_processes=settings.worker_processes,
                worker_max_jobs=settings.worker_max_jobs,
                worker_max_memory=settings.worker_max_memory,
                max_scheduled_jobs=settings.max_scheduled_jobs,
                retain_completed=settings.retain_completed,
                retain_failed=settings.retain_failed,
                outbox_dir=settings.outbox_dir,
            ),
            store=self.store,
            handlers=self.handlers,
            owner=self.owner,
            clock=clock,
            new_id=new_id,
            retry_policy=RetryPolicy(settings.retry_backoff, settings.retry_backoff_max, jitter),
            events=self.events,
            middleware=self.middleware,
            child_spec=child_spec(settings),
            throttle=Throttle(type_limits(settings, self.handlers), settings.priority_aging),
        )
        start_rate = StartRate(clock)  # for the Retry-After of a 429
        self.events.subscribe(self.metrics.on_events)
        self.events.subscribe(log_job_events)
        self.events.subscribe(start_rate.on_events, kinds=(JOB_STARTED,))
        self.jobs = Gateway(
            self.actors,
            request_timeout=settings.request_timeout,
            metrics=self.metrics,
            retry_estimate=start_rate,
            clock=clock,
        )
        self.metrics.bind(self.jobs)
        # Periodic jobs: the built-in scheduler extension, first to start and last to stop,
        # whenever a schedule is declared (checked here, before anything starts: exit 2).
        self.scheduling = Scheduling(
            load_schedules(settings, self.handlers), jobs=self.jobs, clock=clock
        )
        if self.scheduling.defined or EXTENSION_NAME in settings.config_tables:
            if any(extension.name == EXTENSION_NAME for extension in self.extensions):
                raise ConfigError(
                    f"EXTENSIONS: the name {EXTENSION_NAME!r} is the built-in scheduler's"
                )
            self.extensions.insert(0, builtin_extension(self.scheduling))
        self.serve_http = serve_http
        self.http: HttpServer | None = None
        self.port: int | None = None
        self._stop_requested = threading.Event()
        self._signals = 0
        self._stopped = False

    @property
    def recovered(self) -> int:
        return self.actors.recovered

    # -- start --------------------------------------------------------------------------

    def start(self) -> int | None:
        """Start everything; on any failure, stop what started and re-raise. Returns the
        HTTP port (None without HTTP)."""
        if self.serve_http:
            check_bind(self.settings)
        self.store.open()
        try:
            self.actors.start()
        except BaseException:
            self.store.close()
            raise
        try:
            self._start_extensions()
            self.actors.open()
            if self.serve_http:
                self._open_port()
        except BaseException:
            self.stop()
            raise
        return self.port

    def _start_extensions(self) -> None:
        for extension in self.extensions:
            context = ExtensionContext(
                extension.name,
                server_settings=self.settings,
                jobs=self.jobs,
                events=self.events,
                ticker=self.actors.ticker,
                middleware=self.middleware,
                metrics=self.metrics.registry,
                clock=self.clock,
            )
            run_setup(extension, context)
            log.info(
                "extension started",
                extra={
                    "event": "extension_started",
                    "extension": extension.module_name,
                    "actors": len(extension.actors),
                    "routes": [path for path, _ in context.routes],
                },
            )
        unclaimed = unclaimed_sections(self.settings, self.extensions)
        if unclaimed:
            raise ConfigError(
                f"config file {self.settings.config_path}: unknown section [{unclaimed[0]}] "
                "(no extension in EXTENSIONS reads it)"
            )

    def _open_port(self) -> None:
        routes = [
            route
            for extension in self.extensions
            if extension.context is not None
            for route in extension.context.routes
        ]
        settings = self.settings
        app = create_app(
            self.jobs,
            api_token=settings.api_token,
            routes=routes,
            on_auth_failure=self.metrics.auth_failures.inc,
            host=settings.host,
            clock=self.clock,
            schedules=self.scheduling,
            console=settings.console,
            console_read_only=settings.console_read_only,
        )
        self.http = HttpServer(
            app,
            host=settings.host,
            port=settings.port,
            threads=settings.http_threads,
            connection_limit=settings.http_connection_limit,
            channel_timeout=settings.http_channel_timeout,
        )
        self.port = self.http.start()
        threading.Thread(target=self.http.serve, name="http", daemon=True).start()
        log.info(
            "listening",
            extra={
                "event": "server_started",
                "url": f"http://{settings.host}:{self.port}",
                "pid": os.getpid(),
                "settings": settings.described(),
                "job_types": self.handlers.types(),
            },
        )

    # -- stop ---------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Stop taking jobs (503) and starting them; running jobs go on."""
        self.actors.begin_shutdown()

    def stop(self) -> ShutdownSummary:
        """The ordered shutdown (see the module's docstring). A second call does nothing."""
        self.begin_shutdown()
        if self._stopped:
            return ShutdownSummary(0, 0, 0, True, 0.0)
        self._stopped = True
        if self.http is not None:
            # Still listening while jobs drain: /health says 503 shutting_down (SPEC 4),
            # submissions get 503, and no client keeps its connection.
            self.http.close_after_each_response()
        try:
            summary = self.actors.stop(before_actors_stop=self._stop_http_and_extensions)
        finally:
            self._stop_http()  # if the drain failed before reaching it
            self.store.close()
        log.info(
            "shutdown complete",
            extra={
                "event": "shutdown_complete",
                "running_at_start": summary.running_at_start,
                "finished_during_drain": summary.finished_during_drain,
                "returned_to_pending": summary.returned_to_pending,
                "duration_ms": round(summary.seconds * 1000),
            },
        )
        return summary

    def _stop_http(self) -> None:
        if self.http is not None:
            self.http.stop(timeout=HTTP_DRAIN_SECONDS)
            self.http = None

    def _stop_http_and_extensions(self) -> None:
        """After the running jobs drained, before the actors stop: no request reaches an
        actor or the store after this."""
        try:
            self._stop_http()
        finally:
            self._stop_extensions()

    def _stop_extensions(self) -> None:
        for extension in reversed(self.extensions):
            for ref in reversed(extension.actors):
                try:
                    ref.stop(block=True, timeout=HTTP_DRAIN_SECONDS)
                except Exception:
                    log.warning(
                        "an extension's actor did not stop in time",
                        extra={"event": "shutdown_error", "extension": extension.module_name},
                    )
            extension.actors = []

    # -- serving until a signal -----------------------------------------------------------

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now", extra={"event": "forced_exit"})
            os._exit(1)
        self._stop_requested.set()

    def serve_until_stopped(self) -> int:
        # Woken at least every SIGNAL_POLL seconds: the kernel may deliver SIGTERM to any
        # thread, and then only sets a flag that the main thread acts on when it next runs
        # Python code. A main thread blocked in an untimed wait never does: the signal was
        # lost (seen as a server that ignored SIGTERM, about one start in three, under load).
        while not self._stop_requested.wait(SIGNAL_POLL):
            pass
        self.stop()
        return 0


def serve(settings: Settings) -> int:
    system = System(settings)
    signal.signal(signal.SIGTERM, system.request_stop)
    signal.signal(signal.SIGINT, system.request_stop)
    system.start()
    return system.serve_until_stopped()
