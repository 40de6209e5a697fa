"""End-to-end fixtures: real `workstream serve` processes in a scratch directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serverproc import ServerProcess

StartServer = Callable[..., ServerProcess]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def start_server(workdir: Path) -> Iterator[StartServer]:
    """start_server(env={...}, args=[...], wait=True) -> a running ServerProcess."""
    started: list[ServerProcess] = []

    def start(
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        wait: bool = True,
        **kwargs: Any,
    ) -> ServerProcess:
        server = ServerProcess(workdir, env=env, args=args, **kwargs)
        started.append(server)
        return server.start(wait=wait)

    yield start
    for server in started:
        server.stop()
