"""Messages to the Dispatcher (and the status it answers with)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pykka

from workstream.actors.replies import Reply


@dataclass(frozen=True, slots=True)
class WorkerIdle:
    """This slot of this Worker can take a job now. `look`: the claim its Worker made for
    it came back short (finish-and-claim); the Dispatcher claims for it all the same, so
    that a claim is parked for the idle slots and learns when delayed work is due."""

    worker: pykka.ActorRef[Any]
    slot: int = 0
    look: bool = False


@dataclass(frozen=True, slots=True)
class SlotClosed:
    """This slot runs nothing and takes nothing until its Worker says `WorkerIdle` again
    (its worker process died, is being replaced or recycled). Not busy, not idle."""

    worker: pykka.ActorRef[Any]
    slot: int = 0


@dataclass(frozen=True, slots=True)
class Alarm:
    """The one-shot alarm this Dispatcher scheduled (a delayed job's time) went off."""


@dataclass(frozen=True, slots=True)
class Wake:
    """From outside: work may be due that this process did not make (another node's
    NOTIFY, the periodic look on a shared store)."""


@dataclass(frozen=True, slots=True)
class StartHandout:
    """Start-up is done (recovery, extensions): claim and hand out jobs from now on."""


@dataclass(frozen=True, slots=True)
class StopHandout:
    """Shutdown: stop taking and giving out jobs. `all_idle` is set once no Worker runs
    a job."""

    reply: Reply
    all_idle: threading.Event


@dataclass(frozen=True, slots=True)
class Status:
    reply: Reply


@dataclass(frozen=True, slots=True)
class DispatcherStatus:
    workers: int
    idle: int
    busy: int
    accepting: bool
    handing_out: bool
    parked: bool = False  # a claim waits at the Registry to take the next submission
