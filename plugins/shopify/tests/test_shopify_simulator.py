"""The simulator behaves like the Admin API: auth, Link pagination, page_info rules, the bucket, refunds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from metricx_shopify.simulator import ShopSpec, SimState, create_app

BASE = "http://sim.test/admin/api/2026-10"
SPEC = ShopSpec("demo-shop.myshopify.com", seed=7, products=5, customers=5, orders=37)


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


async def _all_pages(http: httpx.AsyncClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    response = await http.get(f"{BASE}/orders.json", params=params)
    rows = response.json()["orders"]
    while "next" in response.links:
        response = await http.get(response.links["next"]["url"])
        assert response.status_code == 200, response.text
        rows += response.json()["orders"]
    return rows


async def test_link_pagination_returns_every_order_once_with_status_any(http: httpx.AsyncClient) -> None:
    rows = await _all_pages(http, {"limit": 10, "status": "any", "order": "updated_at asc"})
    assert len(rows) == 37 and len({r["id"] for r in rows}) == 37
    stamps = [r["updated_at"] for r in rows]
    assert all(isinstance(r["total_price"], str) for r in rows)
    assert all(s[-6] in "+-" for s in stamps)  # the shop's UTC offset, not Z
    # without status=any Shopify hides cancelled and closed orders
    default = await _all_pages(http, {"limit": 250})
    assert len(default) < 37


async def test_page_info_refuses_extra_filters(http: httpx.AsyncClient) -> None:
    first = await http.get(f"{BASE}/orders.json", params={"limit": 5, "status": "any"})
    page_info = httpx.URL(first.links["next"]["url"]).params["page_info"]
    bad = await http.get(f"{BASE}/orders.json", params={"page_info": page_info, "status": "any"})
    assert bad.status_code == 400 and "page_info" in bad.json()["errors"]
    ok = await http.get(f"{BASE}/orders.json", params={"page_info": page_info, "limit": 5})
    assert ok.status_code == 200 and len(ok.json()["orders"]) == 5


async def test_wrong_token_is_401_with_shopify_message(http: httpx.AsyncClient) -> None:
    response = await http.get(f"{BASE}/shop.json", headers={"X-Shopify-Access-Token": "nope"})
    assert response.status_code == 401 and "Invalid API key" in response.json()["errors"]


async def test_the_bucket_fills_then_answers_429_with_retry_after(http: httpx.AsyncClient) -> None:
    limits = []
    for _ in range(40):
        response = await http.get(f"{BASE}/shop.json")
        assert response.status_code == 200
        limits.append(response.headers["X-Shopify-Shop-Api-Call-Limit"])
    assert limits[0] == "1/40" and limits[-1] in ("40/40", "39/40")
    throttled = await http.get(f"{BASE}/shop.json")
    assert throttled.status_code == 429
    assert float(throttled.headers["Retry-After"]) > 0
    assert "Exceeded 2 calls per second" in throttled.json()["errors"]


async def test_refund_moves_updated_at_and_truth_follows(state: SimState, http: httpx.AsyncClient) -> None:
    order_id = min(state.shops[SPEC.domain].orders)
    before = state.shop_truth(SPEC.domain)
    old = dict(state.shops[SPEC.domain].orders[order_id])
    had_refund = bool(old["refunds"])
    order = state.refund(SPEC.domain, order_id)
    assert order["updated_at"] > old["updated_at"] and order["financial_status"] == "refunded"
    after = state.shop_truth(SPEC.domain)
    assert after["refunded_orders"] == before["refunded_orders"] + (0 if had_refund else 1)
    moved = await http.get(
        f"{BASE}/orders.json", params={"status": "any", "updated_at_min": order["updated_at"]}
    )
    assert [o["id"] for o in moved.json()["orders"]] == [order_id]


async def test_shared_faults_in_shopifys_shapes(http: httpx.AsyncClient) -> None:
    async def answer(fault: dict[str, Any], resource: str = "shop") -> httpx.Response:
        await http.post("http://sim.test/_sim/faults", json=fault)
        return await http.get(f"{BASE}/{resource}.json")

    throttled = await answer({"kind": "throttle", "account": SPEC.domain, "retry_after_s": 45})
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "45.0")
    assert throttled.headers["X-Shopify-Shop-Api-Call-Limit"] == "40/40"
    assert (await answer({"kind": "server_error"})).status_code == 503
    expired = await answer({"kind": "token_expired"})
    assert expired.status_code == 401 and "Invalid API key or access token" in expired.json()["errors"]
    empty = await answer({"kind": "malformed", "mode": "empty"}, "orders")
    assert (empty.status_code, empty.content) == (200, b"")
    assert (await http.get(f"{BASE}/shop.json")).status_code == 200
    logged = (await http.get("http://sim.test/_sim/requests")).json()["requests"]
    assert [e["status"] for e in logged] == [429, 503, 401, 200, 200]
    assert [e["account"] for e in logged] == [SPEC.domain] * 5


async def test_a_sunset_version_is_served_as_the_oldest_supported(http: httpx.AsyncClient) -> None:
    await http.post("http://sim.test/_sim/faults", json={"kind": "version_sunset", "version": "2026-10"})
    response = await http.get(f"{BASE}/shop.json")
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
