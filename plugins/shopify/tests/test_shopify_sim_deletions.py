"""The simulator's deletions and customer redaction: what the store serves afterwards (GraphQL lists,
``order(id:)``, bulk results) and the signed webhook Shopify sends about it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from metricx_shopify import queries
from metricx_shopify.bulk import reassemble
from metricx_shopify.webhooks import sign
from shopify_helpers import WEBHOOK_SECRET, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

RUN = (
    "mutation Run($query: String!) { bulkOperationRunQuery(query: $query, groupObjects: true) { "
    "bulkOperation { id status } userErrors { field message code } } }"
)
POLL = "query Poll($id: ID!) { node(id: $id) { id status url } }"
INNER = (
    "{ orders(query: \"updated_at:>='2000-01-01T00:00:00Z'\") { nodes { id legacyResourceId "
    "lineItems { nodes { id quantity } } } } }"
)
PEOPLE = "query People { orders(first: 250) { nodes { legacyResourceId email customer { id } } } }"


@pytest.fixture
def received() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver over real HTTP: (its URL, the deliveries it got)."""
    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        got.append({"headers": dict(request.headers), "body": await request.body()})
        return JSONResponse({"ok": True})

    url, server, thread = serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    yield f"{url}/hook", got
    server.should_exit = True
    thread.join(5)


def _gql(sim: Any, token: str, document: str, **variables: Any) -> Any:
    response = httpx.post(
        f"{sim.url}/admin/api/2026-10/graphql.json",
        json={"query": document, "variables": variables},
        headers={"X-Shopify-Access-Token": token},
    )
    response.raise_for_status()
    return response.json()["data"]


def _ids(sim: Any, token: str, resource: str) -> set[int]:
    nodes = _gql(sim, token, queries.IDS[resource], first=250)[resource]["nodes"]
    return {int(n["legacyResourceId"]) for n in nodes}


async def _bulk_ids(sim: Any, token: str) -> set[int]:
    op = _gql(sim, token, RUN, query=INNER)["bulkOperationRunQuery"]["bulkOperation"]["id"]
    node: dict[str, Any] = {}
    while node.get("status") != "COMPLETED":
        node = _gql(sim, token, POLL, id=op)["node"]
    async with httpx.AsyncClient() as client, client.stream("GET", node["url"]) as response:
        return {int(o["legacyResourceId"]) async for o in reassemble(response.aiter_lines())}


def _delivery(got: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The topic and body of a delivery whose signature is the app's."""
    assert got["headers"]["x-shopify-hmac-sha256"] == sign(got["body"], WEBHOOK_SECRET)
    return got["headers"]["x-shopify-topic"], json.loads(got["body"])


async def test_a_deleted_order_and_product_are_gone_and_their_webhooks_are_signed(
    shopify_sim: Any, new_shop: Any, received: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = received
    spec = new_shop(products=3, customers=4, orders=20)
    shop = shopify_sim.state.shops[spec.domain]
    order_id, product_id = min(shop.orders), min(shop.products)
    for resource, item in (("orders", order_id), ("products", product_id)):
        done = shopify_sim.control(f"shops/{spec.domain}/{resource}/{item}/delete", url=url)
        assert done == {"topic": f"{resource}/delete", "body": {"id": item}, "status_codes": [200]}
    assert [_delivery(d) for d in got] == [
        ("orders/delete", {"id": order_id}),
        ("products/delete", {"id": product_id}),
    ]
    assert got[0]["headers"]["x-shopify-shop-domain"] == spec.domain

    assert order_id not in _ids(shopify_sim, spec.token, "orders") and len(shop.orders) == 19
    assert product_id not in _ids(shopify_sim, spec.token, "products")
    one = _gql(shopify_sim, spec.token, queries.ORDER_REFUNDS, id=f"gid://shopify/Order/{order_id}")
    assert one["order"] is None
    assert await _bulk_ids(shopify_sim, spec.token) == set(shop.orders)
    again = httpx.post(f"{shopify_sim.url}/_sim/shops/{spec.domain}/orders/{order_id}/delete")
    assert again.status_code == 400


async def test_a_customer_with_orders_is_kept_until_redacted(
    shopify_sim: Any, new_shop: Any, received: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = received
    spec = new_shop(products=2, customers=3, orders=12)
    shop = shopify_sim.state.shops[spec.domain]
    customer = next(c for c in shop.customers.values() if c["orders_count"])
    refused = httpx.post(f"{shopify_sim.url}/_sim/shops/{spec.domain}/customers/{customer['id']}/delete")
    assert refused.status_code == 400 and "has orders" in refused.text
    theirs = sorted(o["id"] for o in shop.orders.values() if o["customer"]["id"] == customer["id"])

    done = shopify_sim.control(f"shops/{spec.domain}/customers/{customer['id']}/redact", url=url)
    [(topic, body)] = [_delivery(d) for d in got]
    assert topic == "customers/redact" and body == done["body"]
    assert body["customer"]["email"] == customer["email"] and body["orders_to_redact"] == theirs
    assert body["shop_domain"] == spec.domain

    # the store keeps the sales without the person
    assert customer["id"] not in _ids(shopify_sim, spec.token, "customers")
    nodes = {int(n["legacyResourceId"]): n for n in _gql(shopify_sim, spec.token, PEOPLE)["orders"]["nodes"]}
    assert set(theirs) <= set(nodes)
    assert all(nodes[o]["email"] is None and nodes[o]["customer"] is None for o in theirs)
    assert customer["email"] not in json.dumps(nodes)
