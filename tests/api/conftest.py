"""Fixtures for the API tests: an app over fresh TEST-mode backends, in process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from somafractalmemory.api.app import create_app
from somafractalmemory.client import SomaClient
from somafractalmemory.factory import create_backends
from somafractalmemory.services.backends import Backends
from somafractalmemory.settings import Settings

AppFactory = Callable[..., FastAPI]


def make_settings(**overrides: Any) -> Settings:
    """Settings for a test app: no OpenAPI file, no rate limit, no keys, unless overridden."""
    values: dict[str, Any] = {
        "SOMA_OPENAPI_PATH": "",
        "SOMA_RATE_LIMIT_MAX": 0,
        "SOMA_API_KEYS": None,
        "SOMA_API_KEYS_FILE": None,
        "MEMORY_MODE": "test",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def backends() -> Iterator[Backends]:
    b = create_backends("test")
    yield b
    b.close()


@pytest.fixture
def make_app(backends: Backends) -> AppFactory:
    """``make_app(**settings)``: an app over this test's backends."""

    def build(**overrides: Any) -> FastAPI:
        return create_app(make_settings(**overrides), backends)

    return build


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    with TestClient(make_app()) as c:
        yield c


class InProcessTransport(httpx.BaseTransport):
    """An ``httpx`` transport that hands each request to a Starlette ``TestClient``
    (which speaks ``httpx2``), so ``SomaClient`` can talk to an in-process app."""

    def __init__(self, test_client: TestClient) -> None:
        self.test_client = test_client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.test_client.request(
            request.method,
            str(request.url),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            content=request.read(),
        )
        return httpx.Response(
            answer.status_code, headers=answer.headers.multi_items(), content=answer.content
        )


def soma_client(test_client: TestClient, **kwargs: Any) -> SomaClient:
    """A ``SomaClient`` over an in-process app."""
    return SomaClient("http://testserver", transport=InProcessTransport(test_client), **kwargs)
