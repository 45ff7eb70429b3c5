"""The simulator's bulk operations: lifecycle, one per shop, the streamed JSONL, expiring URLs."""

from __future__ import annotations

from typing import Any

import httpx
from metricx_shopify.bulk import reassemble

RUN = (
    "mutation Run($query: String!) { bulkOperationRunQuery(query: $query, groupObjects: true) { "
    "bulkOperation { id status } userErrors { field message code } } }"
)
POLL = "query Poll($id: ID!) { node(id: $id) { id status errorCode objectCount url partialDataUrl } }"
INNER = (
    "{ orders(query: \"updated_at:>='2000-01-01T00:00:00Z'\") { nodes { id legacyResourceId "
    "processedAt totalPriceSet { shopMoney { amount currencyCode } } "
    "lineItems { nodes { id title quantity } } } } }"
)


def _gql(sim: Any, token: str, document: str, **variables: Any) -> Any:
    response = httpx.post(
        f"{sim.url}/admin/api/2026-10/graphql.json",
        json={"query": document, "variables": variables},
        headers={"X-Shopify-Access-Token": token},
    )
    response.raise_for_status()
    return response.json()


async def test_a_bulk_operation_runs_completes_and_streams_orders_with_their_line_items(
    shopify_sim: Any, new_shop: Any
) -> None:
    spec = new_shop(orders=40)
    run = _gql(shopify_sim, spec.token, RUN, query=INNER)["data"]["bulkOperationRunQuery"]
    assert run["userErrors"] == [] and run["bulkOperation"]["status"] == "CREATED"
    op_id = run["bulkOperation"]["id"]
    # one bulk query per shop at a time
    again = _gql(shopify_sim, spec.token, RUN, query=INNER)["data"]["bulkOperationRunQuery"]
    assert again["bulkOperation"] is None and again["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"

    statuses = []
    node: dict[str, Any] = {}
    while node.get("status") != "COMPLETED":
        node = _gql(shopify_sim, spec.token, POLL, id=op_id)["data"]["node"]
        statuses.append(node["status"])
    assert statuses == ["RUNNING", "COMPLETED"] and node["url"]

    orders = []
    async with httpx.AsyncClient() as client, client.stream("GET", node["url"]) as response:
        assert response.status_code == 200
        async for order in reassemble(response.aiter_lines()):
            orders.append(order)
    shop = shopify_sim.state.shops[spec.domain]
    assert sorted(int(o["legacyResourceId"]) for o in orders) == sorted(shop.orders)
    for order in orders:
        want = shop.orders[int(order["legacyResourceId"])]["line_items"]
        assert len((order.get("lineItems") or {"nodes": []})["nodes"]) == len(want)

    # the URL expires: a request after it is refused, a new poll hands out a fresh one
    shopify_sim.control("clock", advance_s=7200)
    assert httpx.get(node["url"]).status_code == 403
    fresh = _gql(shopify_sim, spec.token, POLL, id=op_id)["data"]["node"]["url"]
    assert httpx.get(fresh).status_code == 200
    # finished: the shop may start another
    assert (
        _gql(shopify_sim, spec.token, RUN, query=INNER)["data"]["bulkOperationRunQuery"]["userErrors"] == []
    )
