"""Fixtures for HTTP tests: a fake service and Falcon's in-process test client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from falcon.testing import TestClient

from tests.unit.http.fakes import FakeService
from tests.unit.http.support import local_client
from workstream.http.app import create_app


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def client(service: FakeService) -> TestClient:
    return local_client(create_app(service))


@pytest.fixture
def make_client(service: FakeService) -> Callable[..., TestClient]:
    """A client over the same fake service with other app options (token, body limit)."""

    def make(**options: object) -> TestClient:
        return local_client(create_app(service, **options))

    return make
