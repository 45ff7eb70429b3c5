"""Fixtures: the simulator behind a real httpx client (ASGI transport), a limiter over fakeredis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import fakeredis.aioredis
import httpx
import pytest
from meta_helpers import BASE_URL, NOW, make_accounts
from metricx_meta import MetaProvider, MetaSettings
from metricx_meta.simulator import DEFAULT_TOKEN, SimState, create_app

from core import Credentials, ProviderContext, provider_context


@pytest.fixture
def sim() -> SimState:
    return SimState(make_accounts, now=NOW)


@pytest.fixture
def settings() -> MetaSettings:
    return MetaSettings(
        base_url=BASE_URL,
        page_size=50,
        min_page_size=5,
        max_retries=0,
        retry_backoff_s=0,
        async_poll_interval_s=0,
        async_stuck_timeout_s=0.05,
        async_max_wait_s=5,
    )


@pytest.fixture
def provider(settings: MetaSettings) -> MetaProvider:
    return MetaProvider(settings)


@pytest.fixture
async def http(sim: SimState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def redis() -> fakeredis.aioredis.FakeRedis:
    return fakeredis.aioredis.FakeRedis()


@pytest.fixture
def ctx(http: httpx.AsyncClient, redis: fakeredis.aioredis.FakeRedis) -> ProviderContext:
    return provider_context(redis=redis, client=http, provider="meta", account="1001")


@pytest.fixture
def creds() -> Credentials:
    return Credentials(access_token=DEFAULT_TOKEN)


@pytest.fixture
def sim_post(http: httpx.AsyncClient) -> Callable[[str, Any], Any]:
    async def post(path: str, body: Any = None) -> Any:
        response = await http.post(path, json=body if body is not None else {})
        assert response.status_code == 200, response.text
        return response.json()

    return post
