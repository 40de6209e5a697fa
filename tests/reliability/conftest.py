"""Fixtures of the reliability scenarios: a Harness per test, one error collector for the
whole run (scanned by test_zz_error_hygiene.py), and the figures lines repeated at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import FIGURES, Harness
from tests.reliability.hygiene import ErrorCollector

COLLECTOR = ErrorCollector()


@pytest.fixture
def collector() -> ErrorCollector:
    return COLLECTOR


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    world = Harness(tmp_path, collector=COLLECTOR)
    yield world
    world.stop_all()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config, items):
    """`slow` tests run only when asked for (`-m slow`), as the marker promises."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="a long variant: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
