"""Order webhooks over real HTTP: signatures, deduplication, newest-wins upserts, racing a sync."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
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
    new_shop: Any, shop_connection: Any, shopify_sim: Any, api: httpx.AsyncClient, run_worker: Any
) -> None:
    spec = new_shop(orders=5)
    _ws, conn = await shop_connection(spec)
    order = _order(shopify_sim, spec.domain)
    codes = await _send(api, spec.domain, order, topic="orders/create", times=3)
    assert codes == [200, 200, 200]
    await run_worker()
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
    new_shop: Any, shop_connection: Any, shopify_sim: Any, api: httpx.AsyncClient, run_worker: Any
) -> None:
    spec = new_shop(orders=5)
    _ws, conn = await shop_connection(spec)
    order = _order(shopify_sim, spec.domain)
    assert await _send(api, spec.domain, order) == [200]
    await run_worker()
    stamp = datetime.fromisoformat(order["updated_at"])

    older = {**order, "updated_at": (stamp - timedelta(hours=1)).isoformat(), "financial_status": "pending"}
    await _send(api, spec.domain, older, topic="orders/updated")
    await run_worker()
    row = await fetch_one(ORDER, c=conn, o=order["id"])
    assert row.financial_status == order["financial_status"] and row.updated_at == stamp

    newer = {**order, "updated_at": (stamp + timedelta(hours=1)).isoformat(), "email": None, "tags": ""}
    newer["financial_status"] = "paid"
    newer["line_items"] = order["line_items"][:1]
    await _send(api, spec.domain, newer, topic="orders/paid")
    await run_worker()
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
    codes = await _send(api, spec.domain, refunded, webhook_id=str(uuid.uuid4()), times=3)
    assert codes == [200, 200, 200]
    # one worker runs the store sync and the webhook's job side by side
    await run_worker()
    assert (
        await fetch_one("SELECT sync_status FROM connections WHERE id = :c", c=conn)
    ).sync_status == "idle"
    row = await fetch_one(ORDER, c=conn, o=order_id)
    assert row.financial_status == "refunded"
    truth = shopify_sim.truth(spec.domain)
    assert (await fetch_one(LINES, c=conn)).n == truth["line_items"]


async def test_an_order_edit_webhook_has_the_store_sync_read_the_edited_order(
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    api: httpx.AsyncClient,
    run_worker: Any,
    redis_client: Any,
) -> None:
    """``orders/edited`` carries the edit's line deltas, not the order (see the fixture): the
    delivery is accepted and the edited order's new totals arrive through the store sync."""
    spec = new_shop(orders=8)
    ws, conn = await shop_connection(spec)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    order_id = min(o["id"] for o in shopify_sim.state.shops[spec.domain].orders.values() if not o["test"])
    before = await fetch_one(ORDER, c=conn, o=order_id)
    edit = shopify_sim.state.edit_order(spec.domain, order_id)
    edited = shopify_sim.state.shops[spec.domain].orders[order_id]
    assert Decimal(edited["total_price"]) < before.total_price

    codes = await _send(api, spec.domain, edit, topic="orders/edited")
    assert codes == [200]
    await run_worker()  # applies the delivery, which queues the store sync
    await run_worker()
    after = await fetch_one(ORDER, c=conn, o=order_id)
    assert after.total_price == Decimal(edited["total_price"])
    assert after.tags == "edited"
    inbox = await fetch_one(
        "SELECT status FROM shopify_webhook_inbox WHERE shop_domain = :d AND topic = 'orders/edited'",
        d=spec.domain,
    )
    assert inbox.status == "applied"


async def test_an_order_edit_webhook_without_its_order_id_is_refused_with_a_reason(
    new_shop: Any, shop_connection: Any, api: httpx.AsyncClient
) -> None:
    spec = new_shop(orders=1)
    await shop_connection(spec)
    codes = await _send(api, spec.domain, {"order_edit": {"id": 1}}, topic="orders/edited")
    assert codes == [422]
    # the order's shape sent under orders/edited is not the edit either
    codes = await _send(api, spec.domain, {"id": 5, "total_price": "1.00"}, topic="orders/edited")
    assert codes == [422]


INBOX = (
    "SELECT status, attempts, last_error, payload IS NULL AS dropped "
    "FROM shopify_webhook_inbox WHERE shop_domain = :d"
)


async def test_a_delivery_is_acknowledged_before_the_job_applies_it(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, api: httpx.AsyncClient, run_worker: Any
) -> None:
    spec = new_shop(orders=3)
    _ws, conn = await shop_connection(spec)
    order = _order(shopify_sim, spec.domain)
    assert await _send(api, spec.domain, order, topic="orders/create") == [200]
    # answered: the delivery waits in the inbox, the order is not written yet
    assert (
        await fetch_one("SELECT count(*) AS n FROM shopify_orders WHERE connection_id = :c", c=conn)
    ).n == 0
    [waiting] = await fetch_all(INBOX, d=spec.domain)
    assert (waiting.status, waiting.dropped) == ("pending", False)

    await run_worker()
    row = await fetch_one(ORDER, c=conn, o=order["id"])
    assert row.total_price is not None
    [done] = await fetch_all(INBOX, d=spec.domain)
    assert (done.status, done.dropped) == ("applied", True)  # the payload (personal data) is gone


async def test_a_delivery_while_the_orders_table_is_locked_is_acknowledged_and_applied_after(
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    api: httpx.AsyncClient,
    run_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database too busy to write orders (another transaction holds shopify_orders) does not stop
    the acknowledgement: the route writes only the inbox. The job fails on the lock, keeps the
    delivery, and its retry applies it once the lock is gone."""
    from metricx_shopify.settings import get_shopify_settings
    from sqlalchemy import text

    monkeypatch.setenv("METRICX_SHOPIFY_WEBHOOK_APPLY_LOCK_TIMEOUT_MS", "200")
    get_shopify_settings.cache_clear()
    spec = new_shop(orders=3)
    _ws, conn = await shop_connection(spec)
    order = _order(shopify_sim, spec.domain)
    async with session_scope() as blocker:
        await blocker.execute(text("LOCK TABLE shopify_orders IN ACCESS EXCLUSIVE MODE"))
        # a route that wrote the order would wait on the lock; this one answers (the bound only
        # keeps a regression from hanging the suite)
        codes = await asyncio.wait_for(_send(api, spec.domain, order, topic="orders/paid"), 60)
        assert codes == [200]
        await run_worker(max_burst_jobs=1)  # the job's first try meets the lock
        [failed] = await fetch_all(INBOX, d=spec.domain)
        assert (failed.status, failed.attempts, failed.dropped) == ("pending", 1, False)
        assert "lock" in failed.last_error
        await blocker.rollback()
    await run_worker()  # the retry
    assert (await fetch_one(ORDER, c=conn, o=order["id"])).financial_status == order["financial_status"]
    [done] = await fetch_all(INBOX, d=spec.domain)
    assert (done.status, done.attempts, done.dropped) == ("applied", 1, True)


async def test_a_delivery_whose_job_was_lost_is_enqueued_again_by_the_fan_out(
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    api: httpx.AsyncClient,
    run_worker: Any,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metricx_shopify.jobs import requeue_stuck_webhooks
    from metricx_shopify.settings import get_shopify_settings
    from metricx_shopify.webhooks import inbox_job_id

    from core.testing.harness import get_settings

    spec = new_shop(orders=3)
    _ws, conn = await shop_connection(spec)
    order = _order(shopify_sim, spec.domain)
    assert await _send(api, spec.domain, order, topic="orders/create") == [200]
    # the job is lost (Redis lost its queue, or every try failed): the row stays pending
    [row] = await fetch_all("SELECT id FROM shopify_webhook_inbox WHERE shop_domain = :d", d=spec.domain)
    await redis_client.delete(f"arq:job:{inbox_job_id(row.id)}")
    await redis_client.zrem(get_settings().queue_name, inbox_job_id(row.id))
    await run_worker()
    assert (await fetch_all(INBOX, d=spec.domain))[0].status == "pending"

    monkeypatch.setenv("METRICX_SHOPIFY_WEBHOOK_REQUEUE_AFTER_S", "0")
    get_shopify_settings.cache_clear()
    assert await requeue_stuck_webhooks(redis_client, "202601010007") >= 1
    await run_worker()
    assert (await fetch_one(ORDER, c=conn, o=order["id"])).shopify_id == order["id"]
    [done] = await fetch_all(INBOX, d=spec.domain)
    assert done.status == "applied"
