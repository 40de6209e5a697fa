"""The composition root: the only module that knows every part.

`Engine` opens the store (taking its lock and migrating), starts the Registry, recovers
jobs an earlier run left `processing`, then starts the Dispatcher, the Workers, the
Sweeper and the Ticker. It is also the `JobService` the HTTP layer talks to: every call
waits on its answer with a bound (`request_timeout`), so a stuck actor costs a 503, never a
hung thread. `stop()` shuts down in order: stop admission, stop hand-out, wait for running
jobs up to `shutdown_timeout`, give back what is still running (attempt not counted),
flush, stop the actors, close the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from workstream.actors.dispatcher import Dispatcher
from workstream.actors.dispatcher_messages import (
    DispatcherStatus,
    Status,
    StopHandout,
    Submit,
    Wake,
)
from workstream.actors.events import EventBus
from workstream.actors.registry import Registry, WriteHealth
from workstream.actors.registry_messages import (
    Barrier,
    Cancel,
    Create,
    Created,
    Recover,
    Release,
    RenewLeases,
    Retry,
    Sweep,
    Swept,
)
from workstream.actors.replies import Ticket
from workstream.actors.sweeper import Sweeper, Tick
from workstream.actors.ticker import Ticker
from workstream.actors.worker import Worker
from workstream.config import Settings
from workstream.errors import (
    InvalidRequest,
    NotFound,
    QueueFull,
    ServiceBusy,
    ShuttingDown,
    StorageUnavailable,
)
from workstream.handlers import HandlerTable
from workstream.http.protocol import Health, Submission
from workstream.jobs.events import JOB_COMPLETED, JOB_FAILED, JOB_STARTED, MAKES_WORK, JobEvent
from workstream.jobs.limits import MAX_DOCUMENT_BYTES, PAGE_BYTES
from workstream.jobs.listing import JobFilter, JobPage
from workstream.jobs.model import Job
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.spec import JobSpec
from workstream.logs import log_job_events
from workstream.metrics import Metrics
from workstream.start_rate import StartRate
from workstream.store.base import Store
from workstream.units import json_problem, shorten

log = logging.getLogger(__name__)

CONTROL_TIMEOUT = 10.0  # bound on the engine's own asks during start-up and shutdown
# Bound on waiting for a submission the Registry has begun to store, past REQUEST_TIMEOUT:
# its transaction ends within the store's own timeouts (SQLite's busy timeout, PostgreSQL's
# statement and lock timeouts, a few seconds each).
STORE_BOUND = 30.0


def new_owner_id() -> str:
    """A random id for this process's life: who holds a claimed job."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class ShutdownSummary:
    running_at_start: int
    finished_during_drain: int
    returned_to_pending: int
    drained: bool  # every running job finished within shutdown_timeout
    seconds: float


class Engine:
    """Everything between "a job was accepted" and "the job is finished"."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        handlers: HandlerTable,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        owner: str | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.handlers = handlers
        self.events = EventBus()
        self.owner = owner or new_owner_id()
        self.metrics = metrics or Metrics(node=self.owner)
        self._clock = clock
        self._start_rate = StartRate(clock)  # for the Retry-After of a 429
        self._new_id = new_id
        self._policy = RetryPolicy(settings.retry_backoff, settings.retry_backoff_max, jitter)
        self._ticker = Ticker(clock=clock)
        self._registry: pykka.ActorRef[Any] | None = None
        self._dispatcher: pykka.ActorRef[Any] | None = None
        self._sweeper: pykka.ActorRef[Any] | None = None
        self._workers: list[pykka.ActorRef[Any]] = []
        self._draining = threading.Event()
        self.handout_stopped = threading.Event()  # set once no new job will start
        self._all_idle = threading.Event()  # set once no Worker runs a job after that
        self._drain_started: float | None = None
        self._running_at_shutdown = 0
        self._finished_during_drain = _Counter()
        self._write_health = WriteHealth()
        self._stopped = False
        self.recovered = 0

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open and migrate, recover, then start the actors bottom-up."""
        self.metrics.bind(self)
        self.events.subscribe(self.metrics.on_events)
        self.events.subscribe(log_job_events)
        self.events.subscribe(self._start_rate.on_events, kinds=(JOB_STARTED,))
        self.store.open()
        try:
            self._start_actors()
        except BaseException:
            self._stop_actors()
            self.store.close()
            raise

    def _start_actors(self) -> None:
        settings = self.settings
        self._registry = Registry.start(
            store=self.store,
            events=self.events,
            owner=self.owner,
            clock=self._clock,
            new_id=self._new_id,
            retry_policy=self._policy,
            lease_duration=settings.lease_duration,
            default_max_retries=settings.max_retries,
            write_health=self._write_health,
        )
        self.recovered = self._recover_at_start()
        log.info(
            "recovery finished",
            extra={"event": "recovery_finished", "recovered": self.recovered},
        )
        self._dispatcher = Dispatcher.start(
            registry=self._registry,
            capacity=settings.job_queue_capacity,
            clock=self._clock,
            schedule=self._ticker.at,
        )
        # Told first: it starts work, and a job's start should not wait for its
        # `job_created` log line and metrics (published on the Registry's thread).
        self.events.subscribe_actor(self._dispatcher, kinds=MAKES_WORK, first=True)
        self._workers = [
            Worker.start(
                name=f"worker-{index}",
                owner=self.owner,
                handlers=self.handlers,
                registry=self._registry,
                dispatcher=self._dispatcher,
                events=self.events,
                clock=self._clock,
            )
            for index in range(1, settings.worker_count + 1)
        ]
        self._sweeper = Sweeper.start(registry=self._registry)
        sweeper, registry = self._sweeper, self._registry
        self._ticker.every(settings.sweeper_interval, lambda: sweeper.tell(Tick()))
        self._ticker.every(settings.lease_duration / 3, lambda: registry.tell(RenewLeases()))
        if not self.store.exclusive:
            # Other nodes add work too: a missed wake-up costs at most one sweep interval.
            self._ticker.every(settings.sweeper_interval, self._wake_dispatcher)
        self._ticker.start()
        self.store.watch(self._wake_dispatcher)

    def _recover_at_start(self) -> int:
        """Jobs a previous run left `processing` were interrupted; their attempts count.
        A store this process owns alone holds only its own previous jobs: all of them go
        back at once. A shared store (PostgreSQL) also holds jobs that live nodes are
        running: only those whose lease expired go back, whoever held them; this node's
        own previous jobs follow when their leases run out."""
        assert self._registry is not None
        if self.store.exclusive:
            return self._ask(self._registry, lambda reply: Recover(reply=reply))
        recovered = 0
        while True:
            swept: Swept = self._ask(self._registry, lambda reply: Sweep(reply=reply))
            recovered += swept.recovered
            if not swept.more:
                return recovered

    def _wake_dispatcher(self) -> None:
        """Work may be due that this process did not make (another node's): look now.
        Called from the store's listener thread and the ticker; never blocks."""
        ref = self._dispatcher
        if ref is None:
            return
        with contextlib.suppress(pykka.ActorDeadError):  # shutting down
            ref.tell(Wake())

    def begin_shutdown(self) -> None:
        """Stop taking jobs (submissions get ShuttingDown, 503) and starting them (pending
        jobs wait for the next run). Running jobs go on; `stop()` waits for them."""
        if self._draining.is_set():
            return
        self._draining.set()
        self._drain_started = time.monotonic()
        self.events.subscribe(self._finished_during_drain, kinds=(JOB_COMPLETED, JOB_FAILED))
        if self._dispatcher is not None:
            try:
                self._running_at_shutdown = self._ask(
                    self._dispatcher, lambda reply: StopHandout(reply, self._all_idle)
                )
            except (ServiceBusy, ShuttingDown):
                log.warning("the dispatcher did not confirm the end of hand-out")
        self.handout_stopped.set()
        log.info(
            "shutdown started",
            extra={"event": "shutdown_started", "running": self._running_at_shutdown},
        )

    def stop(self) -> ShutdownSummary:
        """Drain and stop: running jobs get SHUTDOWN_TIMEOUT (counted from
        `begin_shutdown`) to finish; what still runs then goes back to pending, that
        attempt not counted. A second call does nothing."""
        self.begin_shutdown()
        if self._stopped:
            return ShutdownSummary(0, 0, 0, True, 0.0)
        self._stopped = True
        started = self._drain_started or time.monotonic()
        released = 0
        drained = True
        try:
            if self._dispatcher is not None:
                remaining = self.settings.shutdown_timeout - (time.monotonic() - started)
                drained = self._all_idle.wait(max(0.0, remaining))
            if self._registry is not None:
                released = self._ask(self._registry, lambda reply: Release(reply=reply))
                self._ask(self._registry, lambda reply: Barrier(reply))
        except (ServiceBusy, ShuttingDown, StorageUnavailable) as exc:
            log.error(
                "shutdown could not hand back running jobs: %s; they will be recovered at "
                "the next start",
                exc,
                extra={"event": "shutdown_error"},
            )
        finally:
            self._stop_actors()
            self.store.close()
        summary = ShutdownSummary(
            running_at_start=self._running_at_shutdown,
            finished_during_drain=self._finished_during_drain.count,
            returned_to_pending=released,
            drained=drained,
            seconds=round(time.monotonic() - started, 3),
        )
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

    def _stop_actors(self) -> None:
        """Top-down: the ticker first (no more ticks), the Registry last."""
        self._ticker.stop()
        for ref in (self._sweeper, *self._workers, self._dispatcher):
            if ref is not None:
                ref.stop(block=False)  # a Worker stuck in a handler never reads it: fine
        if self._registry is not None:
            try:
                self._registry.stop(block=True, timeout=CONTROL_TIMEOUT)
            except pykka.Timeout:
                log.error("registry did not stop in time", extra={"event": "shutdown_error"})
        self.events.unsubscribe_all()

    # -- asking actors, always with a bound --------------------------------------------

    def _ask(
        self,
        ref: pykka.ActorRef[Any],
        make: Callable[[pykka.ThreadingFuture[Any]], Any],
        timeout: float = CONTROL_TIMEOUT,
        ticket: Ticket | None = None,
    ) -> Any:
        """Tell `ref` a request and wait at most `timeout` for its answer. With a
        `ticket`, a request the Registry has already begun to store is waited for until
        its transaction ends (bounded by STORE_BOUND): it is answered with its outcome,
        never with a 503 that would hide a stored job."""
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        try:
            ref.tell(make(future))
            try:
                return future.get(timeout=timeout)
            except pykka.Timeout:
                if ticket is None or ticket.abandon():
                    raise ServiceBusy(
                        "the server did not answer in time; nothing was stored"
                        if ticket is not None
                        else "the server did not answer in time; the outcome is unknown"
                    ) from None
                return future.get(timeout=STORE_BOUND)
        except pykka.ActorDeadError:
            raise ShuttingDown("the server is shutting down") from None
        except pykka.Timeout:
            raise ServiceBusy(
                "the server did not answer in time; the outcome is unknown "
                "(check the job, or resubmit with the same Idempotency-Key)"
            ) from None

    def _request(
        self,
        ref: pykka.ActorRef[Any] | None,
        make: Callable[[Any], Any],
        ticket: Ticket | None = None,
    ) -> Any:
        if self._draining.is_set() or ref is None:
            raise ShuttingDown("the server is shutting down")
        return self._ask(ref, make, self.settings.request_timeout, ticket)

    # -- JobService ---------------------------------------------------------------------

    def check_job(self, spec: JobSpec, index: int | None = None) -> None:
        """Refuse, before anything is stored, a job that could never run: a payload that
        is not storable JSON, an unknown type, a payload its handler's validator refuses."""
        where = "" if index is None else f"jobs[{index}]: "
        problem = json_problem(spec.payload, max_bytes=MAX_DOCUMENT_BYTES)
        if problem is not None:
            raise InvalidRequest(f"{where}'payload' cannot be stored: {problem}")
        self.handlers.check_submission(spec.type, spec.payload, index)

    def submit(
        self,
        specs: list[JobSpec],
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        batch: bool = False,
        checked: bool = False,
    ) -> Submission:
        if not checked:
            for index, spec in enumerate(specs):
                self.check_job(spec, index if batch else None)
        ticket = Ticket()
        try:
            created: Created = self._request(
                self._dispatcher,
                lambda reply: Submit(
                    Create(
                        specs=specs,
                        reply=reply,
                        idempotency_key=idempotency_key,
                        request_hash=request_hash,
                        ticket=ticket,
                    )
                ),
                ticket,
            )
        except QueueFull as refused:
            now = self._clock()
            due = sum(1 for spec in specs if spec.run_at is None or spec.run_at <= now)
            refused.retry_after = self._start_rate.retry_after(due)
            raise
        return Submission(created.jobs, created.created)

    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {shorten(job_id)}")
        return job

    def list(self, query: JobFilter) -> JobPage:
        return self.store.list(dataclasses.replace(query, max_bytes=PAGE_BYTES))

    def cancel(self, job_id: str) -> Job:
        return self._request(self._registry, lambda reply: Cancel(job_id, reply))

    def retry(self, job_id: str) -> Job:
        return self._request(self._registry, lambda reply: Retry(job_id, reply))

    def dispatcher_status(self) -> DispatcherStatus | None:
        if self._dispatcher is None or self._draining.is_set():
            return None
        try:
            return self._ask(self._dispatcher, lambda reply: Status(reply), timeout=2.0)
        except (ServiceBusy, ShuttingDown):
            return None

    def health(self) -> Health:
        if self._draining.is_set():
            return Health(False, "shutting_down")
        core = {
            "registry": self._registry,
            "dispatcher": self._dispatcher,
            "sweeper": self._sweeper,
        }
        down = [name for name, ref in core.items() if ref is None or not ref.is_alive()]
        if not self._ticker.alive:
            down.append("ticker")
        alive = sum(1 for ref in self._workers if ref.is_alive())
        if alive == 0:
            down.append("workers")
        if down:
            return Health(False, "unavailable", {"reason": f"{', '.join(down)} not running"})
        if self._write_health.failing:
            return Health(False, "unavailable", {"reason": "storage is failing writes"})
        try:
            self.store.ping()
        except StorageUnavailable:
            return Health(False, "unavailable", {"reason": "storage unreachable"})
        return Health(True, "ok", {"workers": alive})

    def stats(self) -> dict[str, Any]:
        return self.metrics.snapshot()

    def metrics_text(self) -> tuple[str, bytes]:
        return self.metrics.exposition()

    def count_jobs(self) -> Any:
        return self.store.counts(self._clock())


class _Counter:
    """A listener that counts the events it is given."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, events: Sequence[JobEvent]) -> None:
        with self._lock:
            self.count += len(events)
