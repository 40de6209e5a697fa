"""How the Registry's commits are going, shared with the health check.

Only the Registry's thread writes it; `/health` reads it from a request thread. A single
counter that one thread writes needs no lock.
"""

from __future__ import annotations

__all__ = ["WriteHealth"]


class WriteHealth:
    """How the Registry's last commits went, for the health check (read from any thread)."""

    FAILING_AFTER = 3  # consecutive failed commits before health says storage is failing

    def __init__(self) -> None:
        self.consecutive_failures = 0

    @property
    def failing(self) -> bool:
        return self.consecutive_failures >= self.FAILING_AFTER
