"""The Sweeper: on every tick, ask the Registry to recover jobs whose lease expired and to
requeue failed jobs whose backoff is over. (A retry does not wait for this: the Dispatcher
claims at its run_at and the claim requeues it; the sweep catches those no claim took yet,
every worker being busy, so that they show as pending.) One sweep in flight at a time; a
sweep that hit its batch limit is followed at once by another, so a large backlog drains
in bounded transactions without waiting for the next tick.

Retention rides on the same tick: when RETAIN_COMPLETED or RETAIN_FAILED is set, the
Sweeper also asks the Registry to `Purge` finished jobs older than the cutoffs, at most
`RETENTION_BATCH` per transaction (one purge in flight; a full batch is followed at once by
the next, so the writer is never held long and other commands interleave). After each
commit it hands the deleted jobs to `on_purged` (which removes their outbox files)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from workstream.actors.registry_messages import Purge, Purged, Sweep, Swept
from workstream.actors.replies import Callback
from workstream.actors.sweeper_messages import Tick
from workstream.jobs.limits import RETENTION_BATCH, SWEEP_BATCH
from workstream.store.base import DeletedJob

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _SweepDone:
    swept: Swept | None
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class _PurgeDone:
    purged: Purged | None
    error: BaseException | None


@dataclass(frozen=True)
class Retention:
    """How long finished jobs are kept (seconds; 0: for ever), and what to do with the
    deleted ones once their deletion committed."""

    completed: float = 0.0  # completed and cancelled
    failed: float = 0.0  # failed for good
    on_purged: Callable[[list[DeletedJob]], None] | None = None
    batch: int = RETENTION_BATCH

    @property
    def enabled(self) -> bool:
        return self.completed > 0 or self.failed > 0


class Sweeper(pykka.ThreadingActor):
    # Stopped explicitly at shutdown; a daemon thread cannot keep a failed start-up alive.
    use_daemon_thread = True

    def __init__(
        self,
        *,
        registry: pykka.ActorRef[Any],
        batch: int = SWEEP_BATCH,
        retention: Retention | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        self._registry = registry
        self._batch = batch
        self._sweeping = False
        self.sweeps = 0
        self._retention = retention or Retention()
        self._clock = clock
        self._purging = False
        self.purged = 0  # jobs deleted by retention
        # The current run of purges (until one deletes less than a batch): for its log line.
        self._run_deleted = 0
        self._run_batches = 0
        self._run_longest = 0.0
        self._run_longest_delete = 0.0
        self._purge_sent = 0.0

    def on_receive(self, message: Any) -> Any:
        handler = self._HANDLERS.get(type(message))
        if handler is None:
            log.warning("sweeper ignored unknown message %r", type(message).__name__)
            return None
        return handler(self, message)

    def _tick(self, message: Tick) -> None:
        self._start_sweep()
        self._start_purge()

    def _sweep_done(self, message: _SweepDone) -> None:
        self._sweeping = False
        self.sweeps += 1
        if message.error is not None:
            log.warning("sweep failed: %s", message.error, extra={"event": "sweep_failed"})
        elif message.swept is not None and message.swept.more:
            self._start_sweep()

    def _start_sweep(self) -> None:
        if self._sweeping:
            return
        self._sweeping = True
        ref = self.actor_ref

        def done(value: Any, error: BaseException | None) -> None:
            ref.tell(_SweepDone(value, error))

        self._registry.tell(Sweep(reply=Callback(done), limit=self._batch))

    def _start_purge(self) -> None:
        retention = self._retention
        if self._purging or not retention.enabled or self._clock is None:
            return
        self._purging = True
        now = self._clock()
        ref = self.actor_ref
        self._purge_sent = time.perf_counter()

        def done(value: Any, error: BaseException | None) -> None:
            ref.tell(_PurgeDone(value, error))

        self._registry.tell(
            Purge(
                reply=Callback(done),
                completed_before=now - retention.completed if retention.completed else None,
                failed_before=now - retention.failed if retention.failed else None,
                limit=retention.batch,
            )
        )

    def _purge_done(self, message: _PurgeDone) -> None:
        self._purging = False
        took = time.perf_counter() - self._purge_sent
        if message.error is not None:
            log.warning("retention failed: %s", message.error, extra={"event": "retention_failed"})
            self._end_run()
            return
        purged = message.purged
        if purged is None or not purged.deleted:
            self._end_run()
            return
        self.purged += len(purged.deleted)
        self._run_deleted += len(purged.deleted)
        self._run_batches += 1
        self._run_longest = max(self._run_longest, took)
        self._run_longest_delete = max(self._run_longest_delete, purged.seconds)
        if self._retention.on_purged is not None:
            try:
                self._retention.on_purged(purged.deleted)
            except Exception:
                log.exception(
                    "removing deleted jobs' files failed", extra={"event": "retention_failed"}
                )
        if purged.more:
            self._start_purge()
        else:
            self._end_run()

    def _end_run(self) -> None:
        """One log line per run of purges that deleted something."""
        if self._run_deleted:
            log.info(
                "retention deleted %d finished jobs",
                self._run_deleted,
                extra={
                    "event": "jobs_deleted",
                    "count": self._run_deleted,
                    "batches": self._run_batches,
                    # the longest round trip of one batch (its transaction, and the
                    # group commit it waited for), and the longest the deletion itself
                    # held the writer (its statements, inside the transaction)
                    "longest_batch_ms": round(self._run_longest * 1000, 1),
                    "longest_delete_ms": round(self._run_longest_delete * 1000, 1),
                },
            )
        self._run_deleted = self._run_batches = 0
        self._run_longest = self._run_longest_delete = 0.0

    _HANDLERS: dict[type, Callable[..., Any]] = {
        Tick: _tick,
        _SweepDone: _sweep_done,
        _PurgeDone: _purge_done,
    }
