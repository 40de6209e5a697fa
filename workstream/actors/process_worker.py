"""A process Worker: one actor supervising one worker process with K slots.

Jobs go down per slot (`Run(job, slot)`) in batches: the first `Run` into an empty outbox
makes the actor tell itself `FlushRuns`. A reader thread turns the child's frames into
tells; each `done` is a `Finish` to the Registry. The slots those outcomes free ask the
Registry for their next jobs in the same message batch (`Claim`, answered here: `Handed`),
so under load a job's end and the next job's claim share a transaction and no Dispatcher
round trip; slots the claim leaves empty are offered to the Dispatcher (`WorkerIdle`), which
parks a claim for them. Only while `handing_out` is set (the Dispatcher's). Deadlines
live here (monotonic): past a timeout the attempt fails, the child is stopped and replaced,
its other attempts go back uncounted (`Release`). A child that dies fails exactly the
attempts it held. While no child can take jobs, its slots are closed (`SlotClosed`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from workstream.actors.dispatcher_messages import SlotClosed, WorkerIdle
from workstream.actors.events import EventBus
from workstream.actors.job_start import started_event
from workstream.actors.process_worker_messages import (
    AwaitReady,
    CheckDeadlines,
    ChildExited,
    ChildFrames,
    FlushRuns,
    Handed,
    KillChild,
    Respawn,
    Settled,
)
from workstream.actors.registry_messages import Claim, Claimed, Finish, Outcome, Release
from workstream.actors.replies import Callback, Reply, answer
from workstream.actors.worker_messages import Run
from workstream.errors import ConfigError
from workstream.handlers import HandlerTable
from workstream.jobs import attempts
from workstream.jobs.events import JobEvent
from workstream.jobs.model import Job
from workstream.proc import journal, wire
from workstream.proc.frames import encode_all
from workstream.proc.process import ChildProcess, describe_exit
from workstream.proc.slots import Running, Slots
from workstream.proc.spec import ChildSpec
from workstream.proc.supervision import (
    CRASHED,
    FAILED_TO_START,
    RECYCLED,
    TIMED_OUT,
    ChildStats,
    RestartPolicy,
)

log = logging.getLogger(__name__)

KILL_GRACE = 2.0  # after SIGTERM (or EOF for a recycled child), SIGKILL
# The child's state as this actor sees it.
STARTING, READY, RETIRING = "starting", "ready", "retiring"
STOPPING, DOWN, STOPPED = "stopping", "down", "stopped"

After = Callable[[float, Callable[[], None]], None]  # ticker.after(seconds, fn)


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    with contextlib.suppress(pykka.ActorDeadError):  # stopped: the news no longer matters
        ref.tell(message)


class ProcessWorker(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        *,
        name: str,
        owner: str,
        spec: ChildSpec,
        handlers: HandlerTable,
        registry: pykka.ActorRef[Any],
        dispatcher: pykka.ActorRef[Any],
        events: EventBus,
        after: After,
        stats: ChildStats | None = None,
        max_jobs: int = 0,
        max_memory: int = 0,
        grace: float = KILL_GRACE,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        start_child: Callable[..., ChildProcess] = ChildProcess,
        handing_out: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self._owner = owner
        self._spec = spec
        self._slots = Slots(spec.threads)
        self._handlers = handlers
        self._registry = registry
        self._dispatcher = dispatcher
        self._events = events
        self._after = after
        self.stats = stats or ChildStats(name=name, slots=spec.threads)
        self._max_jobs = max_jobs
        self._max_memory = max_memory
        self._grace = grace
        self._clock = clock
        self._monotonic = monotonic
        self._start_child = start_child
        # Set while the Dispatcher hands out jobs: freed slots may then claim their next
        # jobs with the outcomes that freed them. None: always offered to the Dispatcher.
        self._handing_out = handing_out
        self._child: ChildProcess | None = None
        self._generation = 0
        self._state = DOWN
        self._outbox: list[dict[str, Any]] = []
        self._started: list[JobEvent] = []  # `job_started` of the jobs in the outbox
        self._waiters: list[Reply] = []
        self._fatal: str | None = None
        self._planned: str | None = None  # why we ended the child: timed_out, recycled
        self._jobs_run = 0
        self._rss: int | None = None
        self._policy = RestartPolicy()

    # -- life of the actor --------------------------------------------------------------

    def on_start(self) -> None:
        self._spawn()

    def on_stop(self) -> None:
        """After the drain: EOF, then SIGTERM, then SIGKILL, each after a bounded wait."""
        self._state = STOPPED
        child, self._child = self._child, None
        if child is None:
            return
        child.close()
        for escalate in (child.terminate, child.kill, None):
            if child.join(self._grace) or escalate is None:
                break
            escalate()
        journal.exited(self.name, child.pid, "shutdown", jobs_run=self._jobs_run)

    def on_receive(self, message: Any) -> Any:
        try:
            return self._HANDLERS[type(message)](self, message)
        except Exception:  # a bug or a stray message must not stop the actor (and the pool)
            log.exception("process worker failed on %r", message, extra={"event": "worker_error"})
            return None

    # -- the child's life -----------------------------------------------------------------

    def _spawn(self) -> None:
        self._generation += 1
        generation, ref = self._generation, self.actor_ref
        child = self._start_child(
            spec=self._spec,
            on_frames=lambda frames: _tell(ref, ChildFrames(generation, frames)),
            on_exit=lambda code: _tell(ref, ChildExited(generation, code)),
        )
        self._fatal, self._planned, self._jobs_run, self._rss = None, None, 0, None
        self._policy.started(self._monotonic())
        try:
            self.stats.pid = child.start()
        except OSError as exc:
            journal.exited(self.name, None, FAILED_TO_START, error=str(exc))
            self.stats.count_restart(FAILED_TO_START)
            self._answer_waiters(RuntimeError(f"{self.name}: cannot start a worker process: {exc}"))
            self._restart_later(planned=False)
            return
        self._child, self._state = child, STARTING

    def _ready(self, frame: dict[str, Any]) -> None:
        self._state = READY
        journal.started(self.name, frame.get("pid"), frame.get("threads"))
        self._later(RestartPolicy.QUICK, Settled(self._generation))
        self._answer_waiters(None)
        for slot in range(self._slots.count):
            self._offer(slot)

    def _child_exited(self, message: ChildExited) -> None:
        if message.generation != self._generation or self._state == STOPPED:
            return
        pid = self.stats.pid
        exit_text = describe_exit(message.returncode)
        if self._state == STARTING:
            cause = FAILED_TO_START
            error: BaseException = ConfigError(
                self._fatal
                or f"{self.name}: worker process exited before it was ready ({exit_text})"
            )
            self._answer_waiters(error)
        elif self._planned is not None:
            cause = self._planned
        else:
            cause = CRASHED
        lost = sorted(self._slots.running.items()) if cause == CRASHED else []
        failed = self._slots.busy if cause == CRASHED else 0
        journal.exited(
            self.name, pid, cause, exit=exit_text, jobs_run=self._jobs_run, failed_attempts=failed
        )
        self._close_slots()  # before the outcomes: see `_check_deadlines`
        for slot, running in lost:
            self._finish(slot, running, f"worker process died ({exit_text})")
        self._child = None
        self.stats.pid = None
        self.stats.count_restart(cause)
        self._restart_later(planned=cause in (RECYCLED, TIMED_OUT))

    def _restart_later(self, *, planned: bool) -> None:
        self._state = DOWN
        delay = self._policy.ended(self._monotonic(), planned=planned)
        self.stats.crash_loop = self._policy.crash_loop
        if delay <= 0:
            self._spawn()
            return
        journal.backoff(self.name, delay, self._policy.quick_deaths, self._policy.crash_loop)
        self._later(delay, Respawn())

    def _later(self, seconds: float, message: Any) -> None:
        """Tell this actor `message` in `seconds` (the Ticker: actors never sleep)."""
        ref = self.actor_ref
        self._after(seconds, lambda: _tell(ref, message))

    def _settled(self, message: Settled) -> None:
        if message.generation != self._generation or self._state not in (READY, RETIRING):
            return
        if self._policy.crash_loop:
            journal.recovered(self.name, self.stats.pid, self._policy.quick_deaths)
        self._policy.settled()
        self.stats.crash_loop = False

    def _respawn(self, message: Respawn) -> None:
        if self._state == DOWN:
            self._spawn()

    def _stop_child(self, cause: str) -> None:
        """End the child on purpose: nothing it still reports counts."""
        self._planned, self._state = cause, STOPPING
        self._close_slots()
        if self._child is not None:
            self._child.terminate()
        self._later(self._grace, KillChild(self._generation))

    def _kill_child(self, message: KillChild) -> None:
        if message.generation == self._generation and self._child is not None:
            self._child.kill()

    def _await_ready(self, message: AwaitReady) -> None:
        if self._state in (READY, RETIRING):
            answer(message.reply, True)
        else:
            self._waiters.append(message.reply)

    def _answer_waiters(self, error: BaseException | None) -> None:
        waiters, self._waiters = self._waiters, []
        for reply in waiters:
            answer(reply, error is None, error)

    # -- jobs -----------------------------------------------------------------------------

    def _run(self, message: Run) -> None:
        slot, job = message.slot, message.job
        self._slots.offered.discard(slot)
        if self._state != READY or slot in self._slots.running:
            # The child went away after this slot was offered: the job goes back uncounted.
            self._registry.tell(Release(job_ids=[job.id], started=False))
            if slot not in self._slots.running:
                self._dispatcher.tell(SlotClosed(self.actor_ref, slot))
            return
        self._start(slot, job)

    def _start(self, slot: int, job: Job) -> None:
        handler = self._handlers.get(job.type)
        timeout = handler.timeout if handler is not None else None
        self._slots.start(slot, job, self._monotonic(), timeout)
        self.stats.busy = self._slots.busy
        # Published once the batch is written (`_flush_runs`): its metrics and log line do
        # not hold up the job's way down to the child. The time is the start's.
        self._started.append(started_event(job, self._slot_name(slot), self._clock()))
        if not self._outbox:
            self.actor_ref.tell(FlushRuns())
        self._outbox.append(wire.run(slot, job))
        if timeout is not None:
            self._later(timeout, CheckDeadlines(self._generation))

    def _flush_runs(self, message: FlushRuns) -> None:
        frames, self._outbox = self._outbox, []
        started, self._started = self._started, []
        if frames and self._child is not None and not self._child.send(encode_all(frames)):
            text = "worker process does not take its jobs; killing it"
            journal.note(logging.ERROR, "worker_process_stuck", text, self.name, self.stats.pid)
            self._child.kill()  # its exit fails the attempts it held
        if started:
            # Even if the child went meanwhile: these attempts started (the Registry counts
            # them), and their failure, published when the exit is seen, follows.
            self._events.publish(started)

    def _child_frames(self, message: ChildFrames) -> None:
        if message.generation != self._generation:
            return
        freed: list[int] = []
        for frame in message.frames:
            op = frame.get("op")
            if op == wire.DONE:
                freed.extend(self._done(wire.Done.from_wire(frame)))
            elif op == wire.RSS:
                self._rss = frame.get("rss")
                self.stats.rss = self._rss
            elif op == wire.READY and self._state == STARTING:
                self._ready(frame)
            elif op == wire.FATAL:
                self._fatal = str(frame.get("error"))
        self._maybe_retire()
        if freed and self._state == READY and self._may_claim():
            self._claim_next(freed)
            return
        for slot in freed:
            if self._state == READY:
                self._offer(slot)
            elif self._state == RETIRING:
                self._dispatcher.tell(SlotClosed(self.actor_ref, slot))
        if self._state == RETIRING and not self._slots.busy and self._child is not None:
            self._child.close()  # EOF: it exits, and its exit starts the replacement
            self._later(self._grace, KillChild(self._generation))

    def _may_claim(self) -> bool:
        return self._handing_out is not None and self._handing_out.is_set()

    def _claim_next(self, slots: list[int]) -> None:
        """Ask for the freed slots' next jobs right behind their outcomes: the Registry's
        batch takes both, so one transaction ends those attempts and claims the next."""
        self._slots.claim(slots)
        generation, ref = self._generation, self.actor_ref

        def handed(value: Any, error: BaseException | None) -> None:
            _tell(ref, Handed(generation, slots, value, error))

        self._registry.tell(Claim(len(slots), Callback(handed)))

    def _handed(self, message: Handed) -> None:
        claimed: Claimed | None = message.claimed
        jobs = list(claimed.jobs) if claimed is not None else []
        # Slots still claiming belong to this child, READY: leaving READY withdraws them.
        mine = self._slots.claimed(message.slots) if message.generation == self._generation else []
        usable = mine if self._may_claim() else []
        for slot, job in zip(usable, jobs, strict=False):
            self._start(slot, job)
        started = min(len(usable), len(jobs))
        if jobs[started:]:
            # The child went away, or hand-out stopped, while the claim was in flight.
            self._registry.tell(Release(job_ids=[job.id for job in jobs[started:]], started=False))
        for slot in mine[started:]:
            # Short (or hand-out stopped): the Dispatcher claims for this slot, and parks
            # that claim until work comes, as for any idle slot.
            self._offer(slot, look=True)
        if message.error is not None:
            log.warning("claim failed: %s", message.error, extra={"event": "claim_failed"})

    def _done(self, done: wire.Done) -> list[int]:
        if self._slots.done(done.slot, done.job_id, done.attempt) is None:
            return []  # an attempt already given up on (timed out, released)
        self._jobs_run += 1
        self.stats.jobs_run += 1
        self.stats.busy = self._slots.busy
        outcome = Outcome(
            job_id=done.job_id,
            attempt=done.attempt,
            owner=self._owner,
            worker=self._slot_name(done.slot),
            duration=done.duration,
            result=done.result if done.error is None else None,
            error=done.error,
            defer=done.defer,
            hold_type=done.hold_type,
            error_class=done.error_class,
            traceback=done.traceback,
            pid=self.stats.pid,
        )
        self._registry.tell(Finish(outcome))
        return [done.slot]

    def _maybe_retire(self) -> None:
        if self._state != READY:
            return
        too_many = self._max_jobs > 0 and self._jobs_run >= self._max_jobs
        too_big = self._max_memory > 0 and (self._rss or 0) >= self._max_memory
        if not (too_many or too_big):
            return
        self._state, self._planned = RETIRING, RECYCLED
        journal.note(
            logging.INFO,
            "worker_process_recycling",
            "worker process is recycled once its running jobs finish",
            self.name,
            self.stats.pid,
            reason="max_jobs" if too_many else "max_memory",
            jobs_run=self._jobs_run,
            rss_bytes=self._rss,
        )
        for slot in self._slots.withdraw():
            self._dispatcher.tell(SlotClosed(self.actor_ref, slot))

    def _check_deadlines(self, message: CheckDeadlines) -> None:
        if message.generation != self._generation or self._state not in (READY, RETIRING):
            return
        expired = self._slots.expired(self._monotonic())
        if not expired:
            return
        gone = {slot for slot, _ in expired}
        others = [r.job.id for slot, r in self._slots.running.items() if slot not in gone]
        # Slots closed first: the Dispatcher hears it before any claim these outcomes
        # make room for, and hands nothing to this child on its way out.
        self._stop_child(TIMED_OUT)
        for slot, running in expired:
            job = running.job
            journal.note(
                logging.WARNING,
                "handler_timeout",
                "handler timed out; its worker process is stopped",
                self._slot_name(slot),
                self.stats.pid,
                job_id=job.id,
                type=job.type,
                attempt=job.attempts,
            )
            limit = f"{running.timeout or 0:g}s"
            self._finish(
                slot,
                running,
                f"TimeoutError: the handler ran longer than its timeout of {limit}",
                ending=attempts.TIMED_OUT,
                error_class="TimeoutError",
            )
        if others:
            self._registry.tell(Release(job_ids=others))

    def _finish(
        self,
        slot: int,
        running: Running,
        error: str,
        *,
        ending: str = attempts.CRASHED,
        error_class: str = attempts.WORKER_DIED,
    ) -> None:
        """Fail an attempt the child will not report (timed out, or the child died)."""
        outcome = Outcome(
            job_id=running.job.id,
            attempt=running.job.attempts,
            owner=self._owner,
            worker=self._slot_name(slot),
            duration=self._monotonic() - running.started,
            error=error,
            ending=ending,
            error_class=error_class,
            pid=self.stats.pid,
        )
        self._registry.tell(Finish(outcome))

    def _offer(self, slot: int, *, look: bool = False) -> None:
        if self._slots.offer(slot):
            self._dispatcher.tell(WorkerIdle(self.actor_ref, slot, look=look))

    def _close_slots(self) -> None:
        """Every slot, running or offered, is closed: the child is going."""
        closed = {*self._slots.withdraw(), *(slot for slot, _ in self._slots.clear())}
        for slot in sorted(closed):
            self._dispatcher.tell(SlotClosed(self.actor_ref, slot))
        self.stats.busy = 0

    def _slot_name(self, slot: int) -> str:
        return f"{self.name}.{slot}"

    _HANDLERS: dict[type, Callable[..., Any]] = {
        Run: _run,
        FlushRuns: _flush_runs,
        Handed: _handed,
        ChildFrames: _child_frames,
        ChildExited: _child_exited,
        CheckDeadlines: _check_deadlines,
        KillChild: _kill_child,
        Respawn: _respawn,
        Settled: _settled,
        AwaitReady: _await_ready,
    }
