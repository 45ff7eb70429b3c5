"""Order webhooks over real HTTP: signatures, deduplication, newest-wins upserts, racing a sync."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from metricx_shopify.jobs import enqueue_store_sync
from metricx_shopify.mapping import order_row
from metricx_shopify.simulator import send_order_webhook
from metricx_shopify.store import upsert_orders
from metricx_shopify.webhooks import router
from shopify_helpers import WEBHOOK_SECRET, fetch_all, fetch_one

from core.testing.harness import session_scope

ORDER = "SELECT * FROM shopify_orders WHERE connection_id = :c AND shopify_id = :o"
LINES = "SELECT count(*) AS n FROM shopify_order_line_items WHERE connection_id = :c"


URL = "http://api.test/v1/plugins/shopify/webhooks"


@pytest.fixture
async def api(shopify_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The router mounted as the core API mounts it, served in the test's event loop (the database
    engine belongs to this loop, so the API cannot run in a server thread of this process)."""
    app = FastAPI()
    app.include_router(router, prefix="/v1/plugins/shopify")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield client


def _send(api: httpx.AsyncClient, domain: str, order: dict[str, Any], **kwargs: Any) -> Any:
    return send_order_webhook(
        URL, domain, order, secret=kwargs.pop("secret", WEBHOOK_SECRET), client=api, **kwargs
    )


def _order(shopify_sim: Any, domain: str, order_id: int | None = None) -> dict[str, Any]:
    orders = shopify_sim.state.shops[domain].orders
    return copy.deepcopy(orders[order_id if order_id is not None else min(orders)])


async def test_a_valid_webhook_delivered_three_times_upserts_once(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, api: httpx.AsyncClient
) -> None:
    spec = new_shop(orders=5)
    _ws, conn = await shop_connection(spec)
    order = _order(shopify_sim, spec.domain)
    codes = await _send(api, spec.domain, order, topic="orders/create", times=3)
    assert codes == [200, 200, 200]
    rows = await fetch_all(
        "SELECT shopify_id, synced_at FROM shopify_orders WHERE connection_id = :c", c=conn
    )
    assert [r.shopify_id for r in rows] == [order["id"]]
    assert (await fetch_one(LINES, c=conn)).n == len(order["line_items"])
    deliveries = await fetch_all(
        "SELECT webhook_id FROM shopify_webhook_deliveries WHERE shop_domain = :d", d=spec.domain
    )
    assert len(deliveries) == 1


async def test_a_bad_signature_gets_401_and_writes_nothing(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, api: httpx.AsyncClient
) -> None:
    spec = new_shop(orders=5)
    _ws, conn = await shop_connection(spec)
    order = _order(shopify_sim, spec.domain)
    codes = await _send(api, spec.domain, order, bad_signature=True)
    unsigned = await api.post(URL, content=b"{}", headers={"X-Shopify-Topic": "orders/create"})
    assert codes == [401] and unsigned.status_code == 401
    assert (
        await fetch_one("SELECT count(*) AS n FROM shopify_orders WHERE connection_id = :c", c=conn)
    ).n == 0
    assert (
        await fetch_one(
            "SELECT count(*) AS n FROM shopify_webhook_deliveries WHERE shop_domain = :d", d=spec.domain
        )
    ).n == 0


async def test_older_payloads_never_overwrite_newer_data_and_cleared_values_stay_cleared(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, api: httpx.AsyncClient
) -> None:
    spec = new_shop(orders=5)
    _ws, conn = await shop_connection(spec)
    order = _order(shopify_sim, spec.domain)
    assert await _send(api, spec.domain, order) == [200]
    stamp = datetime.fromisoformat(order["updated_at"])

    older = {**order, "updated_at": (stamp - timedelta(hours=1)).isoformat(), "financial_status": "pending"}
    await _send(api, spec.domain, older, topic="orders/updated")
    row = await fetch_one(ORDER, c=conn, o=order["id"])
    assert row.financial_status == order["financial_status"] and row.updated_at == stamp

    newer = {**order, "updated_at": (stamp + timedelta(hours=1)).isoformat(), "email": None, "tags": ""}
    newer["financial_status"] = "paid"
    newer["line_items"] = order["line_items"][:1]
    await _send(api, spec.domain, newer, topic="orders/paid")
    row = await fetch_one(ORDER, c=conn, o=order["id"])
    assert row.updated_at == stamp + timedelta(hours=1) and row.financial_status == "paid"
    # the platform's current value wins, null included: a removed e-mail and cleared tags stay cleared
    assert (row.email, row.tags) == (None, None)
    assert (await fetch_one(LINES, c=conn)).n == 1  # line items replaced, not appended


async def test_concurrent_upserts_of_one_order_all_succeed_and_the_newest_wins(
    new_shop: Any, shop_connection: Any, shopify_sim: Any
) -> None:
    spec = new_shop(orders=5)
    ws, conn = await shop_connection(spec)
    order = _order(shopify_sim, spec.domain)
    stamp = datetime.fromisoformat(order["updated_at"])
    versions = []
    for i in range(12):
        version = {**order, "updated_at": (stamp + timedelta(minutes=i)).isoformat(), "name": f"v{i}"}
        version["line_items"] = [{**li, "id": li["id"] + 1000 * i} for li in order["line_items"]]
        versions.append(version)

    async def write(version: dict[str, Any]) -> None:
        async with session_scope() as session:
            await upsert_orders(session, ws, conn, [order_row(version)])

    await asyncio.gather(*(write(v) for v in reversed(versions)))
    row = await fetch_one(ORDER, c=conn, o=order["id"])
    assert row.name == "v11"
    assert (await fetch_one(LINES, c=conn)).n == len(order["line_items"])


async def test_a_webhook_racing_a_sync_leaves_the_newest_order(
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    api: httpx.AsyncClient,
    run_worker: Any,
    redis_client: Any,
) -> None:
    spec = new_shop(products=3, customers=3, orders=60)
    ws, conn = await shop_connection(spec)
    order_id = min(shopify_sim.state.shops[spec.domain].orders)
    refunded = copy.deepcopy(shopify_sim.state.refund(spec.domain, order_id))
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    codes, _ = await asyncio.gather(
        _send(api, spec.domain, refunded, webhook_id=str(uuid.uuid4()), times=3),
        run_worker(),
    )
    assert codes == [200, 200, 200]
    assert (
        await fetch_one("SELECT sync_status FROM connections WHERE id = :c", c=conn)
    ).sync_status == "idle"
    row = await fetch_one(ORDER, c=conn, o=order_id)
    assert row.financial_status == "refunded"
    truth = shopify_sim.truth(spec.domain)
    assert (await fetch_one(LINES, c=conn)).n == truth["line_items"]
