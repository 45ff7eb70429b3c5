"""The GraphQL client against scripted answers built from the public fixtures: cost pacing through the
shared limiter, THROTTLED inside a 200, MAX_COST_EXCEEDED shrinking the page, error mapping, the
served version, GraphQL nodes normalised (numeric ids, shop-currency money).

The limiter is the real Redis one: pacing is shared by every worker through it.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import fakeredis.aioredis
import httpx
import pytest
from metricx_shopify.client import ShopifyClient
from metricx_shopify.mapping import order_row, refunded_amount
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
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def answer(name: str, **body_changes: Any) -> httpx.Response:
    fx = fixture(name)
    return httpx.Response(
        fx.get("status", 200), json={**fx["body"], **body_changes}, headers=fx.get("headers")
    )


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


def test_every_fixture_names_its_public_source() -> None:
    files = sorted(FIXTURES.glob("*.json"))
    assert len(files) >= 5
    for path in files:
        assert fixture(path.name).get("_source"), path.name


@pytest.mark.parametrize(("available", "blocked_s"), [(1999, 0.0), (1000, 0.0), (100, 9.0)])
async def test_the_throttle_status_paces_every_worker_through_the_shared_limiter(
    make_client: Any, redis_client: Any, available: int, blocked_s: float
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Shopify-Access-Token"] == "shpat_secret_123"
        assert request.url.path == "/admin/api/2026-10/graphql.json" and request.method == "POST"
        body = fixture("graphql_shop.json")["body"]
        body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] = available
        return httpx.Response(200, json=body, headers={"X-Shopify-API-Version": "2026-10"})

    client = make_client(handler)
    shop = await client.fetch_shop()
    assert (shop["iana_timezone"], shop["currency"], shop["myshopify_domain"]) == (
        "America/New_York",
        "USD",
        "snowdevil.myshopify.com",
    )
    limiter = make_client.contexts[-1].limiter
    # the restore rate (100 points/s) over the query's cost (1 point) is the steady request rate;
    # half the bucket in queries of that cost the burst
    assert (limiter.rate_per_s, limiter.burst) == (100.0, 1000)
    assert float(await redis_client.get(f"{limiter.key}:usage")) == pytest.approx(
        100 * (1 - available / 2000)
    )
    # nearly empty: every worker pauses until the bucket is half full again (900 points at 100/s)
    assert blocked_s - 0.5 <= await limiter.blocked_for() <= blocked_s


async def test_throttled_inside_a_200_is_waited_out_then_the_query_answers(make_client: Any) -> None:
    answers = [answer("graphql_throttled.json"), answer("graphql_shop.json")]
    client = make_client(lambda r: answers.pop(0))
    assert (await client.fetch_shop())["name"] == "Snowdevil"
    assert answers == []


async def test_a_long_throttle_defers_instead_of_sleeping(make_client: Any) -> None:
    fx = fixture("graphql_throttled.json")["body"]
    fx["extensions"]["cost"]["requestedQueryCost"] = 1000
    fx["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] = 0
    client = make_client(lambda r: httpx.Response(200, json=fx), max_throttle_wait_s=5)
    with pytest.raises(RateLimited) as caught:
        await client.fetch_shop()
    assert caught.value.retry_after_s == pytest.approx(20.0)  # 1000 points at 50 per second


async def test_max_cost_exceeded_shrinks_the_page_and_the_order_is_normalised(make_client: Any) -> None:
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        first = json.loads(request.content)["variables"]["first"]
        sent.append(first)
        if first > 124:
            return answer("graphql_max_cost_exceeded.json")
        return answer("graphql_orders_refund_other_currency.json")

    client = make_client(handler, page_size=250)
    page = await client.list_page("orders", "updated_at:>='2026-11-01'", None, "UPDATED_AT")
    assert sent == [250, 124]  # 250 x 1000 / 2002 points
    assert page.next_page_info is not None
    [order] = page.rows
    row, lines = order_row(order)
    assert row["shopify_id"] == 5755088406966 and row["customer_shopify_id"] == 6240182681782
    assert row["tags"] == "vip, wholesale" and row["financial_status"] == "partially_refunded"
    assert row["total_price"] == Decimal("108.00") and row["currency"] == "USD"
    # the refund was paid back in EUR: the shop-currency amount is what counts
    assert refunded_amount(order) == Decimal("54.0") == row["total_refunded"]
    assert lines is not None and lines[0]["product_shopify_id"] == 8261223252150
    assert client.served_version == "2026-10"


async def test_an_unknown_field_is_a_config_error_naming_it(make_client: Any) -> None:
    client = make_client(lambda r: answer("graphql_undefined_field.json"))
    with pytest.raises(ConfigError, match="totalPriceV3"):
        await client.fetch_shop()


async def test_a_401_is_an_auth_error_without_the_token(make_client: Any) -> None:
    client = make_client(
        lambda r: httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
    )
    with pytest.raises(AuthError) as caught:
        await client.fetch_shop()
    assert "reconnect" in caught.value.message.lower() and "shpat_secret_123" not in caught.value.message


async def test_5xx_is_retried_then_transient(make_client: Any) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"errors": "Service Unavailable"})

    with pytest.raises(TransientError):
        await make_client(handler).fetch_shop()
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
