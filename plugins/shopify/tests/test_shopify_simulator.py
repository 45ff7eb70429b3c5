"""The simulator behaves like the GraphQL Admin API: auth, the shared faults in Shopify's shapes, the
served version, refunds, and returns as simulated days pass. It serves no legacy REST route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from metricx_shopify import queries
from metricx_shopify.simulator import ShopSpec, SimState, create_app

BASE = "http://sim.test/admin/api/2026-10"
SPEC = ShopSpec("demo-shop.myshopify.com", seed=7, products=5, customers=5, orders=37)
ORDERS = "query Orders($q: String) { orders(first: 50, query: $q) { nodes { legacyResourceId updatedAt } } }"


@pytest.fixture
def state() -> SimState:
    return SimState(shops=(SPEC,))


@pytest.fixture
async def http(state: SimState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(
        transport=transport, headers={"X-Shopify-Access-Token": SPEC.token}
    ) as client:
        yield client


async def _query(http: httpx.AsyncClient, document: str = queries.SHOP, **variables: Any) -> httpx.Response:
    return await http.post(f"{BASE}/graphql.json", json={"query": document, "variables": variables})


async def test_wrong_token_is_401_with_shopify_message(http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"{BASE}/graphql.json", json={"query": queries.SHOP}, headers={"X-Shopify-Access-Token": "nope"}
    )
    assert response.status_code == 401 and "Invalid API key" in response.json()["errors"]


async def test_the_legacy_rest_routes_are_not_served(http: httpx.AsyncClient) -> None:
    for resource in ("shop", "orders", "products", "customers"):
        assert (await http.get(f"{BASE}/{resource}.json")).status_code in (404, 405)


async def test_refund_moves_updated_at_and_truth_follows(state: SimState, http: httpx.AsyncClient) -> None:
    order_id = min(state.shops[SPEC.domain].orders)
    before = state.shop_truth(SPEC.domain)
    old = dict(state.shops[SPEC.domain].orders[order_id])
    had_refund = bool(old["refunds"])
    order = state.refund(SPEC.domain, order_id)
    assert order["updated_at"] > old["updated_at"] and order["financial_status"] == "refunded"
    after = state.shop_truth(SPEC.domain)
    assert after["refunded_orders"] == before["refunded_orders"] + (0 if had_refund else 1)
    moved = await _query(http, ORDERS, q=f"updated_at:>='{order['updated_at']}'")
    assert [n["legacyResourceId"] for n in moved.json()["data"]["orders"]["nodes"]] == [str(order_id)]


async def test_shared_faults_in_shopifys_shapes(http: httpx.AsyncClient) -> None:
    async def answer(fault: dict[str, Any], document: str = queries.SHOP) -> httpx.Response:
        await http.post("http://sim.test/_sim/faults", json=fault)
        return await _query(http, document)

    throttled = await answer({"kind": "throttle", "account": SPEC.domain})
    assert throttled.status_code == 200  # GraphQL throttles inside a 200
    assert throttled.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert throttled.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0
    assert (await answer({"kind": "server_error"})).status_code == 503
    expired = await answer({"kind": "token_expired"})
    assert expired.status_code == 401 and "Invalid API key or access token" in expired.json()["errors"]
    empty = await answer({"kind": "malformed", "mode": "empty"}, ORDERS)
    assert (empty.status_code, empty.content) == (200, b"")
    assert (await _query(http)).status_code == 200
    logged = (await http.get("http://sim.test/_sim/requests")).json()["requests"]
    assert [e["status"] for e in logged] == [200, 503, 401, 200, 200]
    assert [e["account"] for e in logged] == [SPEC.domain] * 5


async def test_a_sunset_version_is_served_as_the_oldest_supported(http: httpx.AsyncClient) -> None:
    await http.post("http://sim.test/_sim/faults", json={"kind": "version_sunset", "version": "2026-10"})
    response = await _query(http)
    assert response.status_code == 200
    assert response.headers["X-Shopify-API-Version"] == "2025-10"


async def test_returns_arrive_as_simulated_days_pass(http: httpx.AsyncClient, state: SimState) -> None:
    before = state.shop_truth(SPEC.domain)
    await http.post("http://sim.test/_sim/clock", json={"advance_s": 2 * 86400})
    after = (await http.get("http://sim.test/_sim/truth", params={"shop": SPEC.domain})).json()
    assert after["refunded_orders"] == before["refunded_orders"] + 2
    assert sum(Decimal(d["net_sales"]) for d in after["daily"].values()) < sum(
        Decimal(d["net_sales"]) for d in before["daily"].values()
    )
