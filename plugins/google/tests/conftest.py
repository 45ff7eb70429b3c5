"""Fixtures: the simulator over an ASGI transport, a fakeredis-backed limiter, a configured provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import fakeredis
import httpx
import pytest
from cryptography.fernet import Fernet
from metricx_google import GoogleAdsProvider, GoogleSettings
from metricx_google.simulator import (
    CHILD_BERLIN_ID,
    CHILD_NY_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
    MANAGER_ID,
    SimState,
    create_app,
)
from pydantic import SecretStr

from core import AccountRef, Credentials, ProviderContext, provider_context
from core.testing.harness import Settings

# A fixed instant: 18:30 UTC is 13:30 in New York and 19:30 in Berlin (partial "today" in both).
FROZEN_NOW = datetime(2026, 3, 10, 18, 30, tzinfo=UTC)
BASE = "http://googleads.sim"


@pytest.fixture
def sim() -> SimState:
    return SimState(now=FROZEN_NOW)


@pytest.fixture
async def http(sim: SimState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


@pytest.fixture
def redis() -> fakeredis.aioredis.FakeRedis:
    return fakeredis.aioredis.FakeRedis()


@pytest.fixture
def settings() -> GoogleSettings:
    return GoogleSettings(
        base_url=BASE,
        token_url=f"{BASE}/token",
        client_id=DEFAULT_CLIENT_ID,
        client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        # Every call reaches the simulator (the realtime caches are tested on their own).
        entity_refresh_s=0,
        account_refresh_s=0,
    )


@pytest.fixture
def provider(settings: GoogleSettings) -> GoogleAdsProvider:
    return GoogleAdsProvider(settings)


@pytest.fixture(scope="session")
def core_settings() -> Settings:
    """Core settings with an encryption key of their own (the token cache encrypts with it)."""
    return Settings(encryption_keys=SecretStr(Fernet.generate_key().decode()))


def make_ctx(http: httpx.AsyncClient, redis: Any, account: str, settings: Settings) -> ProviderContext:
    """A ProviderContext as the engine builds it, its limiter keyed on ``account``."""
    return provider_context(redis=redis, client=http, provider="google", account=account, settings=settings)


@pytest.fixture
def ctx(
    http: httpx.AsyncClient, redis: fakeredis.aioredis.FakeRedis, core_settings: Settings
) -> ProviderContext:
    return make_ctx(http, redis, "test", core_settings)


@pytest.fixture
def creds() -> Credentials:
    return Credentials(refresh_token=DEFAULT_REFRESH_TOKEN)


def child(customer_id: str = CHILD_NY_ID, *, login: str | None = MANAGER_ID, **kw: object) -> AccountRef:
    """A connection to a client account reached through the default manager."""
    currency = "EUR" if customer_id == CHILD_BERLIN_ID else "USD"
    config = {"login_customer_id": login} if login else {}
    fields: dict[str, object] = {
        "connection_id": f"conn-{customer_id}",
        "workspace_id": "ws-1",
        "external_account_id": customer_id,
        "currency": currency,
        "config": config,
    }
    return AccountRef(**(fields | kw))  # type: ignore[arg-type]
