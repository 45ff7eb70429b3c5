"""The simulator's GraphQL Admin API answers in the fixtures' shapes and rejects what Shopify rejects;
the client reads it end to end (nested line items paged, cost pacing, the version served)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from metricx_shopify import queries
from metricx_shopify.client import ShopifyClient
from metricx_shopify.settings import ShopifySettings
from metricx_shopify.simulator import ShopSpec, SimState, create_app

from core import AccountRef, ConfigError, Credentials, provider_context

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPEC = ShopSpec("gql-shop.myshopify.com", seed=5, products=4, customers=5, orders=12)
BASE = "http://sim.test/admin/api/2026-10/graphql.json"


def _shape(value: Any) -> Any:
    """Keys and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def _same_shape(fixture: Any, answer: Any) -> None:
    """Every key the fixture has, the simulator's answer has with the same kind of value."""
    if isinstance(fixture, dict):
        assert isinstance(answer, dict), (fixture, answer)
        for key, value in fixture.items():
            assert key in answer, key
            if value is not None and answer[key] is not None:
                _same_shape(value, answer[key])
    elif isinstance(fixture, list) and fixture and answer:
        _same_shape(fixture[0], answer[0])
    elif fixture is not None and answer is not None:
        assert isinstance(answer, type(fixture)) or {type(fixture), type(answer)} <= {int, float}, (
            fixture,
            answer,
        )


@pytest.fixture
def sim() -> SimState:
    return SimState(shops=(SPEC,))


@pytest.fixture
def http(sim: SimState) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(sim)))


async def post(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post(
        BASE, json={"query": query, "variables": variables}, headers={"X-Shopify-Access-Token": SPEC.token}
    )
    assert response.status_code == 200
    assert response.headers["X-Shopify-API-Version"] == "2026-10"
    body: dict[str, Any] = response.json()
    return body


async def test_answers_have_the_fixtures_shapes(http: httpx.AsyncClient, sim: SimState) -> None:
    # a multi-currency refund, as in the fixture
    order_id = min(sim.shops[SPEC.domain].orders)
    sim.refund(SPEC.domain, order_id, "5.00")
    shop = await post(http, queries.SHOP)
    _same_shape(json.loads((FIXTURES / "graphql_shop.json").read_text())["body"], shop)
    orders = await post(http, queries.LIST["orders"], first=5, sortKey="ID")
    fixture = json.loads((FIXTURES / "graphql_orders_refund_other_currency.json").read_text())["body"]
    refunded = next(n for n in orders["data"]["orders"]["nodes"] if n["refunds"])
    _same_shape(fixture["data"]["orders"]["nodes"][0], refunded)
    _same_shape(fixture["extensions"], orders["extensions"])


async def test_an_unknown_field_is_refused_as_shopify_does(http: httpx.AsyncClient) -> None:
    body = await post(http, "query Orders { orders(first: 2) { nodes { id totalPriceV3 } } }")
    fixture = json.loads((FIXTURES / "graphql_undefined_field.json").read_text())["body"]
    assert "data" not in body
    assert body["errors"][0]["message"] == fixture["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "undefinedField"


async def test_a_too_expensive_query_and_an_empty_bucket(http: httpx.AsyncClient, sim: SimState) -> None:
    body = await post(http, queries.LIST["orders"], first=250)
    fixture = json.loads((FIXTURES / "graphql_max_cost_exceeded.json").read_text())["body"]
    assert body["errors"][0]["extensions"]["code"] == fixture["errors"][0]["extensions"]["code"]
    assert body["errors"][0]["extensions"]["cost"] > 1000
    sim.configure_points(100, 0.1)
    body = await post(http, queries.LIST["orders"], first=5)
    _same_shape(json.loads((FIXTURES / "graphql_throttled.json").read_text())["body"], body)
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"


async def test_the_client_pages_nested_line_items_and_hides_old_orders_without_read_all_orders(
    redis_client: Any,
) -> None:
    spec = ShopSpec(
        "window-shop.myshopify.com", seed=9, orders=40, days=120, scopes=("read_orders", "read_products")
    )
    sim = SimState(shops=(spec,))
    shop = sim.shops[spec.domain]
    big = shop.orders[max(shop.orders)]
    big["line_items"] = [{**big["line_items"][0], "id": 77_000 + i} for i in range(7)]
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(sim)))
    ctx = provider_context(redis=redis_client, client=http, provider="shopify", account=uuid.uuid4().hex)
    client = ShopifyClient(
        ctx,
        AccountRef("c", "w", spec.domain),
        Credentials(spec.token),
        ShopifySettings(base_url="http://sim.test", page_size=10),
    )
    rows = [row async for page in client.iterate("orders", None) for row in page.rows]
    assert "read_all_orders" not in await client.access_scopes()
    visible = [o for o in shop.orders.values() if sim.visible(spec.domain, "orders", o)]
    assert 0 < len(rows) == len(visible) < len(shop.orders)  # only the last 60 days
    [got] = [r for r in rows if int(r["id"]) == big["id"]]
    assert [int(li["id"]) for li in got["line_items"]] == [77_000 + i for i in range(7)]
    with pytest.raises(ConfigError, match="doesn't exist"):
        await client.graphql("query Shop { shop { plan } }")


async def test_a_plus_store_has_a_bigger_cost_bucket_than_a_standard_one(monkeypatch: Any) -> None:
    from metricx_shopify.simulator import __main__ as cli

    standard = await post(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(SimState(shops=(SPEC,))))),
        queries.SHOP,
    )
    plus = SimState(shops=(SPEC,), plan="plus")
    answer = await post(httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(plus))), queries.SHOP)
    limits = [
        (
            b["extensions"]["cost"]["throttleStatus"]["maximumAvailable"],
            b["extensions"]["cost"]["throttleStatus"]["restoreRate"],
        )
        for b in (standard, answer)
    ]
    assert limits == [(2000, 100), (20000, 1000)]
    # the command line: a plan, or an explicit bucket that overrides it
    served: list[SimState] = []
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **_: served.append(app.state.sim))
    cli.main(["--plan", "plus"])
    cli.main(["--points-bucket", "500", "--points-restore", "50"])
    assert [(s.point_max, s.point_restore) for s in served] == [(20000, 1000), (500, 50)]
    with pytest.raises(ValueError, match="unknown Shopify plan"):
        SimState(shops=(SPEC,), plan="gold")
