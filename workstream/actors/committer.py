"""Group commit: each batch of Registry commands in one transaction, failing as narrowly
as the failure allows (docs/architecture.md, "Transaction boundaries").

A refusal fails its own command (the ledger answers it). A storage failure (locked, full,
gone) fails the batch: requests are refused, and outcomes are kept for a commit of their
own ahead of the next batch, since a finished attempt must not be forgotten while the disk
is busy. Any other failure (a bug, a value the store refuses) re-runs the batch one command
per transaction, so that one poison command cannot jam every later batch.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

from workstream.actors.batch import Answer, Batch
from workstream.actors.job_ledger import JobLedger
from workstream.actors.registry_messages import Finish, RenewLeases
from workstream.actors.repair import CommitRepair, Unclaim
from workstream.actors.write_health import WriteHealth
from workstream.errors import StorageUnavailable
from workstream.jobs.events import JobEvent
from workstream.store.base import Store

__all__ = ["Committer", "Settle"]

# The Registry's log: operators find these records where they always were.
log = logging.getLogger("workstream.actors.registry")

# Told after each transaction: the replies to resolve, and the events to publish (None
# when nothing was committed). Called before the next transaction begins.
Settle = Callable[[list[Answer], Sequence[JobEvent] | None], None]


class Committer:
    def __init__(
        self,
        *,
        store: Store,
        ledger: JobLedger,
        repair: CommitRepair,
        clock: Callable[[], float],
        write_health: WriteHealth,
        settle: Settle,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._repair = repair
        self._clock = clock
        self._write_health = write_health
        self._settle = settle
        self._unsaved: list[Finish] = []  # outcomes whose batch failed to commit

    def flush(self, commands: list[Any]) -> None:
        """Commit `commands` (in order), after any work kept from failed batches."""
        unsaved, self._unsaved = self._unsaved, []
        kept = [*self._repair.unclaims(self._clock()), *unsaved]
        if kept:
            # Work kept from failed batches goes first and alone: if it fails again, the
            # requests that arrived since are not held hostage. A failed batch's COMMIT
            # may have landed, so its claims are undone (fenced: a no-op if they had not
            # landed) before this process claims again, and its outcomes are written.
            self._commit(kept, retrying=True)
        if commands:
            self._commit(commands)

    def _commit(self, commands: list[Any], isolate: bool = True, retrying: bool = False) -> None:
        batch = Batch(now=self._clock(), retrying=retrying)
        ledger_before = self._ledger.snapshot()
        repair_before = self._repair.snapshot()
        try:
            with self._store.transaction() as tx:
                # The outcomes' rows, locked in one go: their fenced updates are then
                # decided from that read and written together (see Transaction.lock).
                tx.lock([c.outcome.job_id for c in commands if isinstance(c, Finish)])
                for command in commands:
                    if isinstance(command, Unclaim):
                        self._repair.unclaim(command, tx, batch)
                    else:
                        self._ledger.apply(command, tx, batch)
                self._ledger.run_parked(tx, batch)
        except StorageUnavailable as exc:
            # The store cannot write now (locked, full, gone): refuse the requests, keep
            # the outcomes for a later batch. The COMMIT may have landed all the same (the
            # connection dropped while it ran): remember the claims, to undo them.
            self._ledger.restore(ledger_before)
            self._repair.restore(repair_before)
            self._repair.remember(batch.claims)
            self._write_health.consecutive_failures += 1
            self._unsaved += [c for c in commands if isinstance(c, Finish)]
            self._settle([(_reply(c), None, exc) for c in commands if _answers(c)], None)
            return
        except Exception as exc:
            # A bug, or a value the store refuses. Find the command that breaks the batch
            # so that it alone fails: one poison command must not jam every later batch.
            self._ledger.restore(ledger_before)
            self._repair.restore(repair_before)
            if isolate and len(commands) > 1:
                for command in commands:
                    self._commit([command], isolate=False, retrying=retrying)
                return
            self._refuse_broken(commands, exc)
            return
        self._write_health.consecutive_failures = 0
        self._repair.confirm(batch)
        self._settle(batch.answers, batch.events)

    def _refuse_broken(self, commands: list[Any], exc: Exception) -> None:
        log.error(
            "registry command failed: %s",
            type(exc).__name__,
            exc_info=exc,
            extra={"event": "registry_error"},
        )
        for command in commands:
            if isinstance(command, Finish) and not command.outcome.error_is_internal:
                # The outcome cannot be stored (e.g. a result the store refuses): record the
                # attempt as failed instead, so the job does not stay processing.
                outcome = dataclasses.replace(
                    command.outcome,
                    result=None,
                    error=f"internal error: the attempt's outcome could not be stored "
                    f"({type(exc).__name__})",
                    error_is_internal=True,
                )
                self._commit([Finish(outcome)], isolate=False)
            elif _answers(command):
                error = StorageUnavailable("internal error while storing; nothing was changed")
                self._settle([(_reply(command), None, error)], None)


def _answers(command: Any) -> bool:
    """Whether `command` hears of its batch's failure: an outcome is kept for a later
    batch instead, and a lease renewal has nobody waiting (the next tick renews)."""
    return not isinstance(command, Finish | RenewLeases)


def _reply(command: Any) -> Any:
    return getattr(command, "reply", None)
