"""The CPU-bound task of the `cpu` workload: pure-Python arithmetic for a fixed number of
rounds (about 40 ms on this machine; `BENCH_CPU_ROUNDS` sets it), the same code in every
system, recorded like the no-op task."""

from __future__ import annotations

import os
import time

from benchmarks.record import record

DEFAULT_ROUNDS = 200_000


def rounds() -> int:
    return int(os.environ.get("BENCH_CPU_ROUNDS", DEFAULT_ROUNDS))


def spin(count: int) -> int:
    total = 0
    for i in range(count):
        total = (total + i * i) % 1_000_003
    return total


def cpu_task() -> None:
    started = time.time()
    spin(rounds())
    record(0.0, started)


def calibrate(target: float = 0.040) -> int:
    """The number of rounds that takes about `target` seconds here, alone on a core."""
    trial = 50_000
    best = min(_timed(trial) for _ in range(3))
    return max(1000, int(trial * target / best))


def _timed(count: int) -> float:
    started = time.perf_counter()
    spin(count)
    return time.perf_counter() - started
