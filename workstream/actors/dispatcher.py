"""The Dispatcher: hand-out.

(Submissions do not pass through here: the gateway sends them to the Registry with the
capacity as their limit, and the Registry checks it inside the transaction that stores
them. A relay through this actor added a thread hand-off to every submission and nothing
else.)

The Dispatcher keeps the idle slots (an in-process Worker is one slot; a process
Worker has one per handler thread of its child). When some are idle and jobs may be due, it
asks the Registry to claim as many jobs as there are idle slots (one claim in flight at a
time) and gives one to each. A slot whose worker process is down is closed (`SlotClosed`):
neither busy nor idle until its Worker says `WorkerIdle` again. It learns that jobs may be
due from job events (created, retried, recovered, released), from Workers going idle after
a full claim, and from an alarm set with the Ticker for the earliest delayed job or retry:
a `job_failed` event with runs left carries its `run_at`, and the claim made at that time
re-queues the job (so a retry starts when RETRY_BACKOFF says, not at the next sweep).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from workstream.actors.dispatcher_messages import (
    Alarm,
    DispatcherStatus,
    SlotClosed,
    StartHandout,
    Status,
    StopHandout,
    Wake,
    WorkerIdle,
)
from workstream.actors.events import JobEvents
from workstream.actors.registry_messages import Claim, Claimed, Release, Unpark
from workstream.actors.replies import Callback, answer
from workstream.actors.worker_messages import Run
from workstream.jobs.events import JOB_FAILED, MAKES_WORK

log = logging.getLogger(__name__)

CLAIM_RETRY_DELAY = 1.0  # after a failed claim (storage busy), try again this much later


@dataclass(frozen=True, slots=True)
class _ClaimParked:
    """The claim in flight found nothing and waits at the Registry: `claimed` (no jobs)
    says when to look again and whether a limit holds due jobs back."""

    claimed: Claimed


@dataclass(frozen=True, slots=True)
class _ClaimDone:
    asked: int
    claimed: Claimed | None
    error: BaseException | None


Schedule = Callable[[float, Callable[[], None]], None]


class Dispatcher(pykka.ThreadingActor):
    # Stopped explicitly at shutdown; a daemon thread cannot keep a failed start-up alive.
    use_daemon_thread = True

    def __init__(
        self,
        *,
        registry: pykka.ActorRef[Any],
        clock: Callable[[], float],
        schedule: Schedule | None = None,
        held: bool = False,
        handing_out: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self._registry = registry
        self._clock = clock
        self._schedule = schedule  # ticker.at(when, fn); None in isolated tests
        # Idle slots, and every open slot (idle or busy), as (worker, slot).
        self._idle: list[tuple[pykka.ActorRef[Any], int]] = []
        self._slots: set[tuple[str, int]] = set()
        self._idle_keys: set[tuple[str, int]] = set()
        self._accepting = True
        # Held at start-up until `StartHandout`: recovery and the extensions come first.
        # An Event, not a flag: the Workers read it too (shared by the composition root).
        # While set, a slot freed by an outcome may claim its next job with that outcome,
        # not through here (finish-and-claim).
        self._handing_out = handing_out or threading.Event()
        if not held:
            self._handing_out.set()
        self._maybe_due = True  # jobs may be due: claim when workers are idle
        self._claiming = False
        # A wake-up came while a claim was in flight: that claim may have read the queue
        # before the new work was committed, so its coming back short proves nothing.
        self._woken_while_claiming = False
        # The claim in flight found nothing and waits at the Registry for work (see
        # `Claim.parked`); `Unpark` not yet sent.
        self._parked = False
        self._unparked = False
        self._asked = 0  # slots the claim in flight asked for
        self._alarm_at: float | None = None
        # The last short claim left due jobs behind a limit (concurrency, rate, hold): a
        # worker going idle here may have freed a slot of a limited type, so claim again.
        self._held = False
        self._all_idle: threading.Event | None = None

    def on_receive(self, message: Any) -> Any:
        handler = self._HANDLERS.get(type(message))
        if handler is None:
            log.warning("dispatcher ignored unknown message %r", type(message).__name__)
            return None
        return handler(self, message)

    @property
    def _busy(self) -> int:
        return len(self._slots) - len(self._idle)

    def _worker_idle(self, message: WorkerIdle) -> None:
        key = (message.worker.actor_urn, message.slot)
        if key in self._idle_keys:
            return  # said twice: one slot is still one slot
        self._slots.add(key)
        self._idle_keys.add(key)
        self._idle.append((message.worker, message.slot))
        self._check_all_idle()
        if self._unpark():
            # The parked claim asked for fewer slots than are idle now: once it is back,
            # claim (and park) again for all of them.
            self._woken_while_claiming = True
        if self._held or message.look:
            self._note_due()
        self._pump()

    def _slot_closed(self, message: SlotClosed) -> None:
        key = (message.worker.actor_urn, message.slot)
        self._slots.discard(key)
        if key in self._idle_keys:
            self._idle_keys.discard(key)
            self._idle = [(ref, slot) for ref, slot in self._idle if (ref.actor_urn, slot) != key]
            if self._unpark():
                # The parked claim counted this slot: back, it parks again for the slots
                # still idle rather than take a job nobody can run (it would go back).
                self._woken_while_claiming = True
        self._check_all_idle()

    def _check_all_idle(self) -> None:
        if self._all_idle is not None and self._busy == 0:
            self._all_idle.set()

    def _job_events(self, message: JobEvents) -> None:
        now = self._clock()
        for event in message.events:
            if event.kind not in MAKES_WORK:
                continue
            if event.kind == JOB_FAILED and (event.final or event.run_at is None):
                continue  # failed for good: nothing more to run
            if event.run_at is not None and event.run_at > now:
                self._wake_at(event.run_at)
            else:
                self._note_due()
        self._pump()

    def _claim_parked(self, message: _ClaimParked) -> None:
        self._parked = True
        self._held = message.claimed.held
        if message.claimed.next_run_at is not None:
            self._wake_at(message.claimed.next_run_at)
        if not self._handing_out.is_set():
            self._unpark()
        elif self._woken_while_claiming:
            self._poke()  # what woke us meanwhile may be work this claim did not see
        elif len(self._idle) > self._asked and self._unpark():
            self._woken_while_claiming = True  # slots went idle meanwhile: claim for all

    def _unpark(self) -> bool:
        """Have the parked claim answered now; whether one was parked."""
        if self._claiming and self._parked and not self._unparked:
            self._unparked = True
            self._registry.tell(Unpark())
            return True
        return False

    def _poke(self) -> None:
        """Have the parked claim look once more (work this process did not make may be
        due); it stays parked if it finds nothing."""
        if self._claiming and self._parked and not self._unparked:
            self._registry.tell(Unpark(answer=False))

    def _claim_done(self, message: _ClaimDone) -> None:
        self._claiming = False
        from_parking, self._parked, self._unparked = self._parked, False, False
        if from_parking and len(message.claimed.jobs if message.claimed else []) < self._asked:
            # It took what a transaction made and found no more; park one again for the
            # slots still idle, so the next submission is claimed as it is stored too.
            self._woken_while_claiming = True
        if message.error is not None or message.claimed is None:
            log.warning("claim failed: %s", message.error, extra={"event": "claim_failed"})
            self._wake_at(self._clock() + CLAIM_RETRY_DELAY)
            return
        jobs = message.claimed.jobs
        unplaced = []
        for job in jobs:
            if self._handing_out.is_set() and self._idle:
                worker, slot = self._idle.pop()
                self._idle_keys.discard((worker.actor_urn, slot))
                worker.tell(Run(job, slot))
            else:
                unplaced.append(job.id)
        if unplaced:
            self._registry.tell(Release(job_ids=unplaced, started=False))
        self._held = message.claimed.held
        if len(jobs) < message.asked and not self._woken_while_claiming:
            self._maybe_due = False
            if message.claimed.next_run_at is not None:
                self._wake_at(message.claimed.next_run_at)
        self._pump()

    def _alarm(self, message: Alarm) -> None:
        self._alarm_at = None  # at worst a later alarm is still pending: a spare wake-up
        self._note_due()
        self._pump()

    def _wake(self, message: Wake) -> None:
        # Not our alarm: the one scheduled (if any) is still pending, keep counting on it
        # rather than scheduling its time again.
        self._note_due()
        self._pump()

    def _note_due(self) -> None:
        self._maybe_due = True
        if self._claiming:
            self._woken_while_claiming = True
            self._poke()

    def _wake_at(self, when: float) -> None:
        if self._schedule is None:
            return
        if self._alarm_at is not None and self._alarm_at <= when:
            return  # an earlier alarm will wake us; its claim will find this job's time
        self._alarm_at = when
        ref = self.actor_ref
        self._schedule(when, lambda: ref.tell(Alarm()))

    def _pump(self) -> None:
        if not (self._handing_out.is_set() and self._idle and self._maybe_due) or self._claiming:
            return
        self._claiming = True
        self._woken_while_claiming = False
        asked = self._asked = len(self._idle)
        ref = self.actor_ref

        def claimed(value: Any, error: BaseException | None) -> None:
            ref.tell(_ClaimDone(asked, value, error))

        def parked(value: Any, error: BaseException | None) -> None:
            ref.tell(_ClaimParked(value))

        self._registry.tell(Claim(asked, Callback(claimed), parked=Callback(parked)))

    def _start_handout(self, message: StartHandout) -> None:
        if not self._accepting:
            return  # shutdown began first: hand-out stays stopped
        self._handing_out.set()
        self._pump()

    def _stop_handout(self, message: StopHandout) -> None:
        self._accepting = False
        self._handing_out.clear()
        self._unpark()  # what it takes now goes back (`Release`): nothing starts
        self._all_idle = message.all_idle
        if self._busy == 0:
            message.all_idle.set()
        answer(message.reply, self._busy)

    def _status(self, message: Status) -> None:
        answer(
            message.reply,
            DispatcherStatus(
                workers=len(self._slots),
                idle=len(self._idle),
                busy=self._busy,
                accepting=self._accepting,
                handing_out=self._handing_out.is_set(),
                parked=self._claiming and self._parked,
            ),
        )

    _HANDLERS: dict[type, Callable[..., Any]] = {
        WorkerIdle: _worker_idle,
        SlotClosed: _slot_closed,
        JobEvents: _job_events,
        _ClaimDone: _claim_done,
        _ClaimParked: _claim_parked,
        Alarm: _alarm,
        Wake: _wake,
        StartHandout: _start_handout,
        StopHandout: _stop_handout,
        Status: _status,
    }
