"""Messages to the Sweeper."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tick:
    """From the Ticker, every SWEEPER_INTERVAL: sweep now (unless a sweep is in flight)."""
