"""The REST client against scripted responses: pacing from the call-limit header, error mapping.

The limiter is the real Redis one: pacing is shared by every worker through it.
"""

from __future__ import annotations

import uuid
from typing import Any

import fakeredis.aioredis
import httpx
import pytest
from metricx_shopify.client import ShopifyClient
from metricx_shopify.settings import ShopifySettings

from core import (
    AccountRef,
    AuthError,
    ConfigError,
    Credentials,
    ProviderContext,
    RateLimited,
    TransientError,
    provider_context,
)

SHOP = "paced-shop.myshopify.com"


@pytest.fixture
async def make_client(redis_client: Any) -> Any:
    made: list[ProviderContext] = []

    def make(handler: Any, **settings: Any) -> ShopifyClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        # a limiter key of its own per test: the real Redis is shared by the session
        ctx = provider_context(redis=redis_client, client=http, provider="shopify", account=uuid.uuid4().hex)
        made.append(ctx)
        base = {"base_url": "http://shop.test", "retry_backoff_s": 0, "max_retries": 1, **settings}
        return ShopifyClient(
            ctx, AccountRef("c", "w", SHOP), Credentials("shpat_secret_123"), ShopifySettings(**base)
        )

    make.contexts = made  # type: ignore[attr-defined]
    return make


@pytest.mark.parametrize(("used", "blocked_s"), [("5/40", 0.0), ("30/40", 0.0), ("39/40", 9.5)])
async def test_the_call_limit_header_paces_every_worker_through_the_shared_limiter(
    make_client: Any, redis_client: Any, used: str, blocked_s: float
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Shopify-Access-Token"] == "shpat_secret_123"
        return httpx.Response(200, json={"shop": {}}, headers={"X-Shopify-Shop-Api-Call-Limit": used})

    client = make_client(handler)
    await client.get("shop.json")
    limiter = make_client.contexts[-1].limiter
    # the bucket's drain (40 / 20 = 2 per second) is the steady rate, half the bucket the burst
    assert (limiter.rate_per_s, limiter.burst) == (2.0, 20)
    used_n, capacity = (float(n) for n in used.split("/"))
    assert float(await redis_client.get(f"{limiter.key}:usage")) == 100 * used_n / capacity
    # nearly full: every worker pauses until the bucket has drained to half (19 calls at 2/s)
    assert blocked_s - 0.5 <= await limiter.blocked_for() <= blocked_s


async def test_a_401_is_an_auth_error_without_the_token(make_client: Any) -> None:
    client = make_client(
        lambda r: httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
    )
    with pytest.raises(AuthError) as caught:
        await client.get("shop.json")
    assert "reconnect" in caught.value.message.lower() and "shpat_secret_123" not in caught.value.message


async def test_a_long_retry_after_defers_instead_of_sleeping(make_client: Any) -> None:
    client = make_client(
        lambda r: httpx.Response(429, json={"errors": "Exceeded"}, headers={"Retry-After": "120.0"})
    )
    with pytest.raises(RateLimited) as caught:
        await client.get("orders.json")
    assert caught.value.retry_after_s == 120.0


async def test_5xx_is_retried_then_transient(make_client: Any) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"errors": "Service Unavailable"})

    with pytest.raises(TransientError):
        await make_client(handler).get("orders.json")
    assert len(calls) == 2  # the first try and one retry


def test_a_shop_domain_must_be_myshopify() -> None:
    with pytest.raises(ConfigError, match="myshopify"):
        ShopifyClient(
            provider_context(
                redis=fakeredis.aioredis.FakeRedis(),
                client=httpx.AsyncClient(),
                provider="shopify",
                account="x",
            ),
            AccountRef("c", "w", "evil.example.com"),
            Credentials("shpat_secret_123"),
            ShopifySettings(),
        )
