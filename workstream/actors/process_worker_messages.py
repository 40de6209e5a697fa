"""Messages to a process Worker (besides `Run`, in `worker_messages`). Those about its child
carry the child's generation, so that news from a child already replaced is ignored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workstream.actors.replies import Reply


@dataclass(frozen=True, slots=True)
class AwaitReady:
    """From start-up: answered once the first child is ready, or with a ConfigError (its
    handlers cannot be imported) or a RuntimeError (it died before it was ready)."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class ChildFrames:
    """From the reader thread: a batch of frames the child wrote."""

    generation: int
    frames: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ChildExited:
    """From the reader thread: the child's socket reached EOF and the child has exited."""

    generation: int
    returncode: int


@dataclass(frozen=True, slots=True)
class CheckDeadlines:
    """From the Ticker: a running job's timeout may have passed."""

    generation: int


@dataclass(frozen=True, slots=True)
class KillChild:
    """From the Ticker: the grace after SIGTERM is over."""

    generation: int


@dataclass(frozen=True, slots=True)
class Settled:
    """A child has been ready for `RestartPolicy.QUICK` seconds (if still `generation`): a
    crash loop before it is over."""

    generation: int


@dataclass(frozen=True, slots=True)
class Respawn:
    """From the Ticker: the backoff after a quick death is over; start a replacement."""


@dataclass(frozen=True, slots=True)
class FlushRuns:
    """To itself: write every job waiting to go down, as one batch."""


@dataclass(frozen=True, slots=True)
class Handed:
    """The Registry's answer to the claim sent with outcomes (finish-and-claim): the next
    jobs for `slots`, freed by those outcomes (`claimed` None: the claim failed)."""

    generation: int
    slots: list[int]
    claimed: Any
    error: BaseException | None
