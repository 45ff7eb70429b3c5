"""Deletions, the uninstall and the mandatory compliance webhooks, event-id deduplication, several
apps' secrets, cleared values, and a connection to another tenant's shop refused at creation."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from metricx_shopify.jobs import enqueue_store_sync
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.simulator import send_order_webhook
from metricx_shopify.webhooks import ORDER_TOPICS, router
from shopify_helpers import WEBHOOK_SECRET, fetch_all, fetch_one

URL = "http://api.test/v1/plugins/shopify/webhooks"
OPERATOR = {"Authorization": "Bearer test-operator-key"}


@pytest.fixture
async def hooks(shopify_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(router, prefix="/v1/plugins/shopify")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield client


async def _send(hooks: httpx.AsyncClient, domain: str, body: dict[str, Any], topic: str, **kw: Any) -> int:
    [code] = await send_order_webhook(
        URL, domain, body, secret=kw.pop("secret", WEBHOOK_SECRET), topic=topic, client=hooks, **kw
    )
    return code


async def _synced(new_shop: Any, shop_connection: Any, run_worker: Any, redis_client: Any) -> Any:
    spec = new_shop(products=4, customers=4, orders=16)
    ws, conn = await shop_connection(spec)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    return spec, ws, conn


async def _traces(needle: str) -> list[str]:
    """Every table (core's and the plugin's) with a row whose text contains ``needle``."""
    tables = await fetch_all(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
    )
    found = []
    for t in tables:
        row = await fetch_one(
            f'SELECT count(*) AS n FROM "{t.tablename}" x WHERE x::text ILIKE :p', p=f"%{needle}%"
        )
        if row.n:
            found.append(t.tablename)
    return found


async def test_customers_redact_leaves_no_trace_in_any_table(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any, hooks: Any
) -> None:
    spec, ws, conn = await _synced(new_shop, shop_connection, run_worker, redis_client)
    shop = shopify_sim.state.shops[spec.domain]
    order = next(o for o in shop.orders.values() if o["customer"])
    customer = shop.customers[order["customer"]["id"]]
    email = customer["email"]
    assert await _traces(email)  # stored by the sync
    # the merchant asks Shopify to erase the customer: Shopify erases them, then sends the webhook
    body = shopify_sim.state.redact_customer(spec.domain, customer["id"])
    assert order["id"] in body["orders_to_redact"] and order["email"] is None
    assert await _send(hooks, spec.domain, body, "customers/redact") == 200
    # acknowledged: the worker's job applies it, and drops the payload (it names the customer)
    await run_worker()
    assert await _traces(email) == []
    assert await _traces(str(customer["id"])) == []
    kept = await fetch_one("SELECT count(*) AS n FROM shopify_orders WHERE connection_id = :c", c=conn)
    assert kept.n == len(shop.orders)  # the sales stay, without the person
    # a full re-read of the store afterwards brings nobody back
    await enqueue_store_sync(str(conn), str(ws), full=True, redis=redis_client)
    await run_worker()
    assert await _traces(email) == [] and await _traces(str(customer["id"])) == []


async def test_app_uninstalled_disconnects_and_drops_the_credentials(
    new_shop: Any, shop_connection: Any, run_worker: Any, redis_client: Any, hooks: Any
) -> None:
    spec, _ws, conn = await _synced(new_shop, shop_connection, run_worker, redis_client)
    assert (
        await _send(hooks, spec.domain, {"id": 1, "myshopify_domain": spec.domain}, "app/uninstalled") == 200
    )
    await run_worker()
    row = await fetch_one("SELECT status FROM connections WHERE id = :c", c=conn)
    assert row.status == "disconnected"
    assert not await fetch_all("SELECT 1 FROM credentials WHERE connection_id = :c", c=conn)
    assert await _traces(spec.token) == []


async def test_deletions_and_shop_redact(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any, hooks: Any
) -> None:
    spec, _ws, conn = await _synced(new_shop, shop_connection, run_worker, redis_client)
    shop = shopify_sim.state.shops[spec.domain]
    order_id, product_id = min(shop.orders), min(shop.products)
    # deleted in the store: Shopify sends each deletion's webhook
    for resource, item in (("orders", order_id), ("products", product_id)):
        body = shopify_sim.state.delete(spec.domain, resource, item)
        assert await _send(hooks, spec.domain, body, f"{resource}/delete") == 200
    await run_worker()
    left = await fetch_one(
        "SELECT (SELECT count(*) FROM shopify_orders WHERE connection_id = :c AND shopify_id = :o) AS o, "
        "(SELECT count(*) FROM shopify_products WHERE connection_id = :c AND shopify_id = :p) AS p, "
        "(SELECT count(*) FROM shopify_orders WHERE connection_id = :c) AS n",
        c=conn,
        o=order_id,
        p=product_id,
    )
    assert (left.o, left.p, left.n) == (0, 0, len(shop.orders))
    assert await _send(hooks, spec.domain, {"shop_id": 1, "shop_domain": spec.domain}, "shop/redact") == 200
    await run_worker()
    for table in ("shopify_orders", "shopify_order_line_items", "shopify_customers", "shopify_products"):
        row = await fetch_one(f"SELECT count(*) AS n FROM {table} WHERE connection_id = :c", c=conn)
        assert row.n == 0, table
    assert await _send(hooks, spec.domain, {"customer": {"id": 1}}, "customers/data_request") == 200


async def test_dedupe_on_event_id_other_apps_secrets_and_cleared_values(
    new_shop: Any,
    shop_connection: Any,
    shopify_sim: Any,
    hooks: Any,
    monkeypatch: pytest.MonkeyPatch,
    run_worker: Any,
) -> None:
    monkeypatch.setenv("METRICX_SHOPIFY_WEBHOOK_SECRETS", json.dumps(["custom-app-secret"]))
    get_shopify_settings.cache_clear()
    spec = new_shop(orders=3)
    _ws, conn = await shop_connection(spec)
    order = copy.deepcopy(
        shopify_sim.state.shops[spec.domain].orders[min(shopify_sim.state.shops[spec.domain].orders)]
    )
    order["tags"] = "vip"
    event = str(uuid.uuid4())
    assert await _send(hooks, spec.domain, order, "orders/create", webhook_id=event) == 200
    # the same event delivered to a second subscription carries another webhook id: one apply
    again = await send_order_webhook(
        URL,
        spec.domain,
        order,
        secret="custom-app-secret",
        topic="orders/updated",
        client=hooks,
        webhook_id=event,
    )
    assert again == [200]
    assert await _send(hooks, spec.domain, order, "orders/create", secret="unknown-secret") == 401
    # the merchant clears the tags and the customer's e-mail is removed: stored as cleared
    cleared = {**order, "tags": "", "email": None, "updated_at": "2099-01-01T00:00:00+00:00"}
    assert await _send(hooks, spec.domain, cleared, "orders/updated", secret="custom-app-secret") == 200
    await run_worker()
    applied = await fetch_all(
        "SELECT status FROM shopify_webhook_inbox WHERE shop_domain = :d AND event_id = :e",
        d=spec.domain,
        e=event,
    )
    assert [r.status for r in applied] == ["applied"]  # the second subscription's copy: never stored
    row = await fetch_one(
        "SELECT tags, email, raw FROM shopify_orders WHERE connection_id = :c AND shopify_id = :o",
        c=conn,
        o=order["id"],
    )
    assert (row.tags, row.email, row.raw["email"]) == (None, None, None)


async def test_a_connection_to_another_tenants_shop_is_refused(
    metricx_env: Any, new_shop: Any, shopify_env: dict[str, str]
) -> None:
    from core.testing.harness import create_api

    victim, own = new_shop(orders=2), new_shop(orders=2)
    app = create_api()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api:
        ws = await api.post("/v1/workspaces", json={"name": "attacker"}, headers=OPERATOR)
        assert ws.status_code == 201, ws.text
        wid = ws.json()["id"]
        key = await api.post(f"/v1/workspaces/{wid}/api-keys", json={"name": "t"}, headers=OPERATOR)
        headers = {"Authorization": f"Bearer {key.json()['key']}"}
        body = {
            "provider": "shopify",
            "external_account_id": victim.domain,
            "credentials": {"access_token": own.token},
            "config": {"shop_domain": victim.domain},
        }
        refused = await api.post(f"/v1/workspaces/{wid}/connections", json=body, headers=headers)
        assert 400 <= refused.status_code < 500, refused.text
        assert own.token not in refused.text
        listed = await api.get(f"/v1/workspaces/{wid}/connections", headers=headers)
        assert listed.json() in ([], {"items": []}) or not listed.json().get("items")
    await app.state.resources.aclose()


async def test_every_webhook_fixture_is_accepted_and_applied(
    new_shop: Any, shop_connection: Any, hooks: Any, run_worker: Any
) -> None:
    from pathlib import Path

    spec = new_shop(orders=2)
    _ws, conn = await shop_connection(spec)
    prefix = spec.domain.split(".")[0]
    fixtures = sorted((Path(__file__).resolve().parents[1] / "fixtures").glob("webhook_*.json"))
    topics = set()
    # the uninstall last: it disconnects the shop
    deliveries = []
    for path in sorted(fixtures, key=lambda p: "app_uninstalled" in p.name):
        fx = json.loads(path.read_text().replace("{shop}", prefix))
        deliveries += [(path.name, topic, fx["body"]) for topic in fx.get("topics", [fx.get("topic")])]
    for name, topic, body in deliveries:
        topics.add(topic)
        response = await hooks.post(
            URL,
            content=json.dumps(body).encode(),
            headers={
                "X-Shopify-Topic": topic,
                "X-Shopify-Hmac-Sha256": _sign(json.dumps(body).encode()),
                "X-Shopify-Shop-Domain": spec.domain,
                "X-Shopify-Event-Id": str(uuid.uuid4()),
            },
        )
        assert response.status_code == 200 and response.json()["status"] == "accepted", (name, response.text)
        await run_worker()
        if topic in ORDER_TOPICS:
            row = await fetch_one(
                "SELECT tags, financial_status, test, cancelled_at FROM shopify_orders "
                "WHERE connection_id = :c AND shopify_id = :o",
                c=conn,
                o=body["id"],
            )
            # every documented order sample is a cancelled, voided test order
            assert (row.tags, row.financial_status, row.test) == ("tag1, tag2", "voided", True), name
            assert (row.cancelled_at is not None) == (body["cancelled_at"] is not None), name
        if topic == "orders/edited":  # the edit names the order; the store sync reads it again
            runs = await fetch_one(
                "SELECT count(*) AS n FROM sync_runs WHERE connection_id = :c AND mode = 'store'", c=conn
            )
            assert runs.n >= 1, name
    assert topics >= {
        "orders/create",
        "orders/updated",
        "orders/paid",
        "orders/cancelled",
        "orders/edited",
        "customers/delete",
        "orders/delete",
        "products/delete",
        "app/uninstalled",
        "customers/redact",
        "customers/data_request",
        "shop/redact",
    }
    assert (await fetch_one("SELECT status FROM connections WHERE id = :c", c=conn)).status == "disconnected"


def _sign(body: bytes) -> str:
    from metricx_shopify.webhooks import sign

    return sign(body, WEBHOOK_SECRET)


async def test_deletions_missed_by_webhooks_are_reconciled_by_the_store_sync(
    new_shop: Any, shop_connection: Any, shopify_sim: Any, run_worker: Any, redis_client: Any
) -> None:
    spec, ws, conn = await _synced(new_shop, shop_connection, run_worker, redis_client)
    shop = shopify_sim.state.shops[spec.domain]
    # deleted in the store while no webhook reached metricx: a customer's orders, then the customer
    # (Shopify keeps a customer who has orders), and a product
    customer_id = max(shop.customers)
    for order_id in [o["id"] for o in shop.orders.values() if (o["customer"] or {}).get("id") == customer_id]:
        shopify_sim.state.delete(spec.domain, "orders", order_id)
    shopify_sim.state.delete(spec.domain, "orders", max(shop.orders))
    shopify_sim.state.delete(spec.domain, "customers", customer_id)
    shopify_sim.state.delete(spec.domain, "products", max(shop.products))
    await enqueue_store_sync(str(conn), str(ws), full=True, redis=redis_client)  # full: reconcile now
    await run_worker()
    counts = await fetch_one(
        "SELECT (SELECT count(*) FROM shopify_orders WHERE connection_id = :c) AS o, "
        "(SELECT count(*) FROM shopify_products WHERE connection_id = :c) AS p, "
        "(SELECT count(*) FROM shopify_customers WHERE connection_id = :c) AS cu, "
        "(SELECT count(*) FROM shopify_order_line_items li JOIN shopify_orders o ON o.id = li.order_id "
        " WHERE o.connection_id = :c) AS li",
        c=conn,
    )
    truth = shopify_sim.truth(spec.domain)
    assert (counts.o, counts.p, counts.cu) == (truth["orders"], truth["products"], truth["customers"])
    lines = await fetch_one(
        "SELECT count(*) AS n FROM shopify_order_line_items WHERE connection_id = :c", c=conn
    )
    assert lines.n == counts.li == truth["line_items"]
