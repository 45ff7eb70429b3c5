"""The REST client against scripted responses: pacing from the call-limit header, error mapping."""

from __future__ import annotations

from typing import Any

import fakeredis.aioredis
import httpx
import pytest
from metricx_shopify import client as client_module
from metricx_shopify.client import ShopifyClient
from metricx_shopify.settings import ShopifySettings

from core import AccountRef, AuthError, ConfigError, Credentials, ProviderContext, RateLimited, TransientError
from core.ratelimit import AccountLimiter

SHOP = "paced-shop.myshopify.com"


def _client(handler: Any, **settings: Any) -> ShopifyClient:
    client_module._last_level.pop(SHOP, None)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    limiter = AccountLimiter(fakeredis.aioredis.FakeRedis(), "shopify", SHOP)
    account = AccountRef("c", "w", SHOP)
    base = {"base_url": "http://shop.test", "retry_backoff_s": 0, "max_retries": 1, **settings}
    return ShopifyClient(
        ProviderContext(http, limiter), account, Credentials("shpat_secret_123"), ShopifySettings(**base)
    )


@pytest.mark.parametrize(("used", "pause"), [("5/40", 0.0), ("12/40", 0.2), ("24/40", 1.5), ("37/40", 5.0)])
async def test_the_pause_before_the_next_request_follows_the_bucket(used: str, pause: float) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Shopify-Access-Token"] == "shpat_secret_123"
        return httpx.Response(200, json={"shop": {}}, headers={"X-Shopify-Shop-Api-Call-Limit": used})

    client = _client(handler)
    await client.get("shop.json")
    assert client._pace_s() == pause


async def test_a_401_is_an_auth_error_without_the_token() -> None:
    client = _client(lambda r: httpx.Response(401, json={"errors": "[API] Invalid API key or access token"}))
    with pytest.raises(AuthError) as caught:
        await client.get("shop.json")
    assert "reconnect" in caught.value.message.lower() and "shpat_secret_123" not in caught.value.message


async def test_a_long_retry_after_defers_instead_of_sleeping() -> None:
    client = _client(
        lambda r: httpx.Response(429, json={"errors": "Exceeded"}, headers={"Retry-After": "120.0"})
    )
    with pytest.raises(RateLimited) as caught:
        await client.get("orders.json")
    assert caught.value.retry_after_s == 120.0


async def test_5xx_is_retried_then_transient() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"errors": "Service Unavailable"})

    with pytest.raises(TransientError):
        await _client(handler).get("orders.json")
    assert len(calls) == 2  # the first try and one retry


def test_a_shop_domain_must_be_myshopify() -> None:
    with pytest.raises(ConfigError, match="myshopify"):
        ShopifyClient(
            ProviderContext(
                httpx.AsyncClient(), AccountLimiter(fakeredis.aioredis.FakeRedis(), "shopify", "x")
            ),
            AccountRef("c", "w", "evil.example.com"),
            Credentials("shpat_secret_123"),
            ShopifySettings(),
        )
