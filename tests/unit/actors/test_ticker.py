"""The Ticker: periodic ticks and one-shot alarms from one thread."""

from __future__ import annotations

import threading
import time

from workstream.actors.ticker import Ticker


def test_every_calls_repeatedly_until_stopped() -> None:
    ticker = Ticker()
    ticks = threading.Semaphore(0)
    ticker.every(0.01, ticks.release)
    ticker.start()
    try:
        for _ in range(3):
            assert ticks.acquire(timeout=2)
    finally:
        ticker.stop()
    assert not ticker._thread.is_alive()


def test_at_in_the_past_fires_at_once_and_only_once() -> None:
    ticker = Ticker()
    fired = threading.Event()
    count = []
    ticker.at(time.time() - 100, lambda: (count.append(1), fired.set()))
    ticker.start()
    try:
        assert fired.wait(2)
        done = threading.Event()
        ticker.at(time.time(), done.set)  # a later alarm proves the first is not repeated
        assert done.wait(2)
        assert count == [1]
    finally:
        ticker.stop()


def test_alarms_fire_in_time_order() -> None:
    ticker = Ticker()
    order: list[str] = []
    last = threading.Event()
    now = time.time()
    ticker.at(now + 0.03, lambda: (order.append("second"), last.set()))
    ticker.at(now + 0.01, lambda: order.append("first"))
    ticker.start()
    try:
        assert last.wait(2)
        assert order == ["first", "second"]
    finally:
        ticker.stop()


def test_a_failing_callback_does_not_stop_the_ticker() -> None:
    ticker = Ticker()
    survived = threading.Event()

    def boom() -> None:
        raise RuntimeError("listener gone")

    ticker.at(time.time(), boom)
    ticker.at(time.time() + 0.01, survived.set)
    ticker.start()
    try:
        assert survived.wait(2)
    finally:
        ticker.stop()
