"""Fixtures shared by every test tier."""

from __future__ import annotations

from typing import Any

import pykka
import pytest

from tests.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def actors():
    """Start actors through `actors.append(ref)`; all are stopped at teardown."""
    refs: list[pykka.ActorRef[Any]] = []
    yield refs
    for ref in refs:
        ref.stop(block=False)
