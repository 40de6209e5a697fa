"""The actors, started bottom-up and stopped top-down, and the ordered shutdown.

Start (the store is already open): the Registry, the Dispatcher (hand-out held), the
Workers, the Sweeper and the Ticker; then, in `open()`, recovery of the jobs an earlier run
left `processing`, and hand-out begins. Between the two the composition root sets up the
extensions, so they see recovery and every job's start. Stop:
stop admission and hand-out, wait for running jobs up to `shutdown_timeout`, give back what
still runs (attempt not counted), flush, then stop the actors, the Registry last.

The composition root (`workstream.system`) builds this from settings; extensions reach it
only through `workstream.extensions.ExtensionContext`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from workstream.actors.ask import ask
from workstream.actors.dispatcher import Dispatcher
from workstream.actors.dispatcher_messages import StartHandout, StopHandout, Wake
from workstream.actors.events import EventBus
from workstream.actors.process_worker import ProcessWorker
from workstream.actors.process_worker_messages import AwaitReady
from workstream.actors.registry import Registry
from workstream.actors.registry_messages import Barrier, Recover, Release, RenewLeases, Sweep, Swept
from workstream.actors.sweeper import Retention, Sweeper
from workstream.actors.sweeper_messages import Tick
from workstream.actors.ticker import Ticker
from workstream.actors.worker import Worker
from workstream.actors.write_health import WriteHealth
from workstream.errors import ServiceBusy, ShuttingDown, StorageUnavailable
from workstream.handlers import HandlerTable
from workstream.handlers.email_delivery import remove_outbox_files
from workstream.handlers.middleware import MiddlewareChain
from workstream.jobs.events import JOB_COMPLETED, JOB_FAILED, MAKES_WORK, JobEvent
from workstream.jobs.retry import RetryPolicy
from workstream.jobs.throttle import Throttle
from workstream.proc.spec import ChildSpec
from workstream.proc.supervision import ChildStats
from workstream.store.base import DeletedJob, Store

log = logging.getLogger(__name__)

CONTROL_TIMEOUT = 10.0  # bound on the system's own asks during start-up and shutdown
CHILD_START_TIMEOUT = 60.0  # a worker process imports the handlers (on a busy box: slowly)


@dataclass(frozen=True)
class Tuning:
    """The settings the actors need, as plain values (the actors never read Settings)."""

    worker_count: int = 10
    job_queue_capacity: int = 100
    sweeper_interval: float = 10.0
    lease_duration: float = 30.0
    max_retries: int = 3
    shutdown_timeout: float = 30.0
    worker_processes: int = 0  # 0: in-process Workers, one thread each
    worker_max_jobs: int = 0
    worker_max_memory: int = 0
    max_scheduled_jobs: int | None = None  # None: no cap on delayed jobs
    retain_completed: float = 0.0  # 0: finished jobs are kept for ever
    retain_failed: float = 0.0
    outbox_dir: str | None = None  # where deleted jobs' .eml files are removed from


def process_shares(worker_count: int, processes: int) -> list[int]:
    """WORKER_COUNT threads shared among the processes (never a process with none): 10
    over 3 is [4, 3, 3]."""
    processes = min(processes, worker_count)
    base, extra = divmod(worker_count, processes)
    return [base + (1 if index < extra else 0) for index in range(processes)]


@dataclass(frozen=True)
class ShutdownSummary:
    running_at_start: int
    finished_during_drain: int
    returned_to_pending: int
    drained: bool  # every running job finished within shutdown_timeout
    seconds: float


class ActorSystem:
    """Owns the actor refs, the event bus, the ticker and the order of start and stop."""

    def __init__(
        self,
        tuning: Tuning,
        *,
        store: Store,
        handlers: HandlerTable,
        owner: str,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        retry_policy: RetryPolicy,
        events: EventBus | None = None,
        middleware: MiddlewareChain | None = None,
        child_spec: ChildSpec | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.tuning = tuning
        self.throttle = throttle or Throttle()
        self.child_spec = child_spec or ChildSpec(name="worker", threads=1)
        self.child_stats: list[ChildStats] = []
        self.store = store
        self.handlers = handlers
        self.owner = owner
        self.clock = clock
        self.events = events or EventBus()
        self.middleware = middleware or MiddlewareChain()
        self.ticker = Ticker(clock=clock)
        self.write_health = WriteHealth()
        self.registry: pykka.ActorRef[Any] | None = None
        self.dispatcher: pykka.ActorRef[Any] | None = None
        self.sweeper: pykka.ActorRef[Any] | None = None
        self.workers: list[pykka.ActorRef[Any]] = []
        self.draining = threading.Event()
        self.handout_stopped = threading.Event()  # set once no new job will start
        # Set by the Dispatcher while it hands out jobs; read by the Workers (finish-and-claim).
        self._handing_out = threading.Event()
        self.recovered = 0
        self._new_id = new_id
        self._policy = retry_policy
        self._all_idle = threading.Event()  # set once no Worker runs a job after that
        self._drain_started: float | None = None
        self._running_at_shutdown = 0
        self._finished_during_drain = _Counter()
        self._stopped = False

    # -- start --------------------------------------------------------------------------

    def start(self) -> None:
        """Start every actor, bottom-up, with hand-out held until `open()`; on failure,
        stop what started and re-raise."""
        try:
            self._start_actors()
        except BaseException:
            self.stop_actors()
            raise

    def _start_actors(self) -> None:
        tuning = self.tuning
        self.registry = Registry.start(
            store=self.store,
            events=self.events,
            owner=self.owner,
            clock=self.clock,
            new_id=self._new_id,
            retry_policy=self._policy,
            lease_duration=tuning.lease_duration,
            default_max_retries=tuning.max_retries,
            write_health=self.write_health,
            max_scheduled=tuning.max_scheduled_jobs,
            throttle=self.throttle,
        )
        self.dispatcher = Dispatcher.start(
            registry=self.registry,
            clock=self.clock,
            schedule=self.ticker.at,
            held=True,  # until `open()`: no job starts before recovery and the extensions
            handing_out=self._handing_out,
        )
        # Told first: it starts work, and a job's start should not wait for its
        # `job_created` log line and metrics (published on the Registry's thread).
        self.events.subscribe_actor(self.dispatcher, kinds=MAKES_WORK, first=True)
        if tuning.worker_processes > 0:
            self._start_process_workers()
        else:
            self.workers = [
                Worker.start(
                    name=f"worker-{index}",
                    owner=self.owner,
                    handlers=self.handlers,
                    registry=self.registry,
                    dispatcher=self.dispatcher,
                    events=self.events,
                    middleware=self.middleware,
                    clock=self.clock,
                )
                for index in range(1, tuning.worker_count + 1)
            ]
        self.sweeper = Sweeper.start(
            registry=self.registry, retention=self._retention(), clock=self.clock
        )
        sweeper, registry = self.sweeper, self.registry
        self.ticker.every(tuning.sweeper_interval, lambda: sweeper.tell(Tick()))
        self.ticker.every(tuning.lease_duration / 3, lambda: registry.tell(RenewLeases()))
        if not self.store.exclusive:
            # Other nodes add work too: a missed wake-up costs at most one sweep interval.
            self.ticker.every(tuning.sweeper_interval, self.wake_dispatcher)
        self.ticker.start()
        self.store.watch(self.wake_dispatcher)

    def _retention(self) -> Retention:
        tuning = self.tuning
        outbox = tuning.outbox_dir

        def remove_files(deleted: list[DeletedJob]) -> None:
            if outbox is not None:
                remove_outbox_files(outbox, [job.id for job in deleted])

        return Retention(
            completed=tuning.retain_completed, failed=tuning.retain_failed, on_purged=remove_files
        )

    def _start_process_workers(self) -> None:
        """One process Worker per child, each with its share of WORKER_COUNT threads; start-up
        waits until every child has imported the handlers (or stops: ConfigError, exit 2)."""
        assert self.registry is not None and self.dispatcher is not None
        tuning = self.tuning
        ticker = self.ticker
        for index, threads in enumerate(
            process_shares(tuning.worker_count, tuning.worker_processes), start=1
        ):
            name = f"worker-{index}"
            stats = ChildStats(name=name, slots=threads)
            self.child_stats.append(stats)
            self.workers.append(
                ProcessWorker.start(
                    name=name,
                    owner=self.owner,
                    spec=self.child_spec.replace(name=name, threads=threads),
                    handlers=self.handlers,
                    registry=self.registry,
                    dispatcher=self.dispatcher,
                    events=self.events,
                    after=ticker.after,
                    stats=stats,
                    max_jobs=tuning.worker_max_jobs,
                    max_memory=tuning.worker_max_memory,
                    clock=self.clock,
                    handing_out=self._handing_out,
                )
            )
        for ref in self.workers:
            ask(ref, lambda reply: AwaitReady(reply), CHILD_START_TIMEOUT)

    def open(self) -> None:
        """Recover what an earlier run left `processing`, then start handing out jobs.
        Called once the extensions are set up, so that they see the recovery and every
        job's start (and their middleware runs around every call)."""
        self.recovered = self._recover_at_start()
        log.info(
            "recovery finished",
            extra={"event": "recovery_finished", "recovered": self.recovered},
        )
        assert self.dispatcher is not None
        self.dispatcher.tell(StartHandout())

    def _recover_at_start(self) -> int:
        """Jobs a previous run left `processing` were interrupted; their attempts count.
        A store this process owns alone holds only its own previous jobs: all of them go
        back at once. A shared store (PostgreSQL) also holds jobs that live nodes are
        running: only those whose lease expired go back, whoever held them; this node's
        own previous jobs follow when their leases run out."""
        assert self.registry is not None
        if self.store.exclusive:
            return ask(self.registry, lambda reply: Recover(reply=reply), CONTROL_TIMEOUT)
        recovered = 0
        while True:
            swept: Swept = ask(self.registry, lambda reply: Sweep(reply=reply), CONTROL_TIMEOUT)
            recovered += swept.recovered
            if not swept.more:
                return recovered

    def wake_dispatcher(self) -> None:
        """Work may be due that this process did not make (another node's): look now.
        Called from the store's listener thread and the ticker; never blocks."""
        ref = self.dispatcher
        if ref is None:
            return
        with contextlib.suppress(pykka.ActorDeadError):  # shutting down
            ref.tell(Wake())

    # -- what the gateway and health need ---------------------------------------------

    def down(self) -> list[str]:
        """The core parts that are not running (empty when all are)."""
        core = {"registry": self.registry, "dispatcher": self.dispatcher, "sweeper": self.sweeper}
        down = [name for name, ref in core.items() if ref is None or not ref.is_alive()]
        if not self.ticker.alive:
            down.append("ticker")
        if self.workers_alive() == 0:
            down.append("workers")
        return down

    def workers_alive(self) -> int:
        """Handler threads whose Worker runs: WORKER_COUNT in either mode when all is well."""
        if self.child_stats:
            pairs = zip(self.workers, self.child_stats, strict=True)
            return sum(stats.slots for ref, stats in pairs if ref.is_alive())
        return sum(1 for ref in self.workers if ref.is_alive())

    # -- stop ---------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Stop taking jobs (submissions get ShuttingDown, 503) and starting them (pending
        jobs wait for the next run). Running jobs go on; `stop()` waits for them."""
        if self.draining.is_set():
            return
        self.draining.set()
        self._drain_started = time.monotonic()
        self.events.subscribe(self._finished_during_drain, kinds=(JOB_COMPLETED, JOB_FAILED))
        if self.dispatcher is not None:
            try:
                self._running_at_shutdown = ask(
                    self.dispatcher,
                    lambda reply: StopHandout(reply, self._all_idle),
                    CONTROL_TIMEOUT,
                )
            except (ServiceBusy, ShuttingDown):
                log.warning("the dispatcher did not confirm the end of hand-out")
        self.handout_stopped.set()
        log.info(
            "shutdown started",
            extra={"event": "shutdown_started", "running": self._running_at_shutdown},
        )

    def stop(self, before_actors_stop: Callable[[], None] | None = None) -> ShutdownSummary:
        """Drain and stop: running jobs get SHUTDOWN_TIMEOUT (counted from
        `begin_shutdown`) to finish; what still runs then goes back to pending, that
        attempt not counted; then `before_actors_stop` (the extensions' actors stop
        there, having seen every event), then the actors. A second call does nothing."""
        self.begin_shutdown()
        if self._stopped:
            return ShutdownSummary(0, 0, 0, True, 0.0)
        self._stopped = True
        started = self._drain_started or time.monotonic()
        released = 0
        drained = True
        try:
            if self.dispatcher is not None:
                remaining = self.tuning.shutdown_timeout - (time.monotonic() - started)
                drained = self._all_idle.wait(max(0.0, remaining))
            if self.registry is not None:
                released = ask(self.registry, lambda reply: Release(reply=reply), CONTROL_TIMEOUT)
                ask(self.registry, lambda reply: Barrier(reply), CONTROL_TIMEOUT)
        except (ServiceBusy, ShuttingDown, StorageUnavailable) as exc:
            log.error(
                "shutdown could not hand back running jobs: %s; they will be recovered at "
                "the next start",
                exc,
                extra={"event": "shutdown_error"},
            )
        finally:
            try:
                if before_actors_stop is not None:
                    before_actors_stop()
            finally:
                self.stop_actors()
        return ShutdownSummary(
            running_at_start=self._running_at_shutdown,
            finished_during_drain=self._finished_during_drain.count,
            returned_to_pending=released,
            drained=drained,
            seconds=round(time.monotonic() - started, 3),
        )

    def stop_actors(self) -> None:
        """Top-down: the ticker first (no more ticks), the Registry last."""
        self.ticker.stop()
        stopping = []
        for ref in (self.sweeper, *self.workers, self.dispatcher):
            if ref is not None:
                stopping.append(ref.stop(block=False))  # a stuck Worker never reads it: fine
        if self.tuning.worker_processes > 0:
            for future in stopping:  # process Workers stop their children: wait for that
                with contextlib.suppress(pykka.Timeout):
                    future.get(timeout=CONTROL_TIMEOUT)
        if self.registry is not None:
            try:
                self.registry.stop(block=True, timeout=CONTROL_TIMEOUT)
            except pykka.Timeout:
                log.error("registry did not stop in time", extra={"event": "shutdown_error"})
        self.events.unsubscribe_all()


class _Counter:
    """A listener that counts the events it is given."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, events: Sequence[JobEvent]) -> None:
        with self._lock:
            self.count += len(events)
