"""Signed but malformed Shopify webhooks (issue 19 item 2): each answers a 4xx naming the problem, never 500.

Shopify retries any non-2xx delivery; a 500 also hid the cause. The corpus runs through the core app
(the plugin's router as the API mounts it) against real PostgreSQL, with a connection for the shop.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.webhooks import sign

SECRET = "shpss-security-corpus-secret"
URL = "/v1/plugins/shopify/webhooks"
ORDER: dict[str, Any] = {
    "id": 820982911946154508,
    "name": "#9999",
    "email": "jon@example.com",
    "created_at": "2026-11-01T10:00:00-05:00",
    "updated_at": "2026-11-01T10:05:00-05:00",
    "processed_at": "2026-11-01T10:00:00-05:00",
    "currency": "USD",
    "total_price": "199.65",
    "subtotal_price": "199.65",
    "total_tax": "0.00",
    "total_discounts": "0.00",
    "financial_status": "paid",
    "customer": {"id": 115310627314723954},
    "line_items": [{"id": 866550311766439020, "product_id": 632910392, "quantity": 1, "price": "199.00"}],
}


def variant(**changes: Any) -> dict[str, Any]:
    order = copy.deepcopy(ORDER)
    order.update(changes)
    return order


def corpus() -> list[tuple[str, bytes]]:
    bodies: list[tuple[str, Any]] = [
        ("id as object", variant(id={"a": 1})),
        ("id as float", variant(id=1.5)),
        ("id huge", variant(id=10**30)),
        ("id huge string", variant(id="9" * 40)),
        ("price huge", variant(total_price="1e30")),
        ("price NaN", variant(total_price="NaN")),
        ("price list", variant(total_price=[1])),
        ("quantity huge", variant(line_items=[{"id": 1, "quantity": 2**40}])),
        ("line_items object", variant(line_items={"id": 1})),
        ("line item string", variant(line_items=["x"])),
        ("refunds number", variant(refunds=5)),
        ("refund transactions number", variant(refunds=[{"transactions": 7}])),
        ("customer id list", variant(customer={"id": [1]})),
        ("year 1 date", variant(processed_at="0001-01-01T00:00:00+05:00")),
        ("year 9999 date", variant(updated_at="9999-12-31T23:59:59-05:00")),
        ("naive date", variant(created_at="2026-11-01T10:00:00")),
        ("date number", variant(created_at=12)),
        ("name too long", variant(name="#" * 500)),
        ("currency too long", variant(currency="DOLLARS" * 10)),
        ("NUL in email", variant(email="a\x00b@example.com")),
        ("NUL in nested raw", variant(note_attributes=[{"name": "x\x00"}])),
        ("order is a list", [ORDER]),
        ("order is a string", "order"),
        ("order is null", None),
    ]
    raw = [(label, json.dumps(body).encode()) for label, body in bodies]
    raw += [
        ("deep nesting", b'{"id": 1, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
        ("moderate nesting", b'{"id": 1, "x": ' + b"[" * 100 + b"]" * 100 + b"}"),
        ("NaN literal", b'{"id": 1, "total_price": NaN}'),
        ("1e999 literal", b'{"id": 1, "total_price": 1e999}'),
        ("lone surrogate", b'{"id": 1, "email": "\\ud800"}'),
        ("escaped NUL", b'{"id": 1, "email": "\\u0000"}'),
        ("5000-digit id", b'{"id": 1' + b"0" * 5000 + b"}"),
        ("not JSON", b"{not json"),
        ("not UTF-8", b'{"id": 1, "email": "\xff\xfe"}'),
        ("empty", b""),
    ]
    return raw


@pytest.fixture
def shopify_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("METRICX_SHOPIFY_WEBHOOK_SECRET", SECRET)
    get_shopify_settings.cache_clear()
    yield
    get_shopify_settings.cache_clear()


async def shop_connection(domain: str) -> None:
    from core.db.engine import session_scope
    from core.providers import Credentials
    from core.services import create_workspace
    from core.services.accounts import create_connection

    async with session_scope() as session:
        ws = await create_workspace(session, f"ws-{uuid.uuid4().hex[:6]}")
        await create_connection(
            session,
            ws.id,
            "shopify",
            domain,
            Credentials(access_token="shpat_x"),
            config={"shop_domain": domain},
        )


async def deliver(
    api: httpx.AsyncClient, domain: str, body: bytes, *, secret: str = SECRET
) -> httpx.Response:
    return await api.post(
        URL,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/updated",
            "X-Shopify-Hmac-Sha256": sign(body, secret),
            "X-Shopify-Shop-Domain": domain,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        },
    )


async def test_signed_malformed_webhooks_answer_4xx_with_a_reason(
    api: httpx.AsyncClient, shopify_secret: None
) -> None:
    domain = f"corpus-{uuid.uuid4().hex[:6]}.myshopify.com"
    await shop_connection(domain)
    valid = await deliver(api, domain, json.dumps(ORDER).encode())
    assert valid.status_code == 200 and valid.json()["status"] == "accepted", valid.text

    failures = []
    for label, body in corpus():
        response = await deliver(api, domain, body)
        if response.status_code >= 500 or response.status_code < 400:
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
        elif not response.json().get("detail"):
            failures.append(f"{label}: {response.status_code} without a reason")
    assert not failures, "\n".join(failures)

    unsigned = await deliver(api, domain, b'{"id": 1}', secret="wrong")
    assert unsigned.status_code == 401


async def test_a_webhook_reaches_only_its_shop(
    api: httpx.AsyncClient, shopify_secret: None, run_worker: Any
) -> None:
    """Tenants A and B have stores: a signed order for A's shop writes to A's connection only (the
    route acknowledges it, the worker's job applies it)."""
    from sqlalchemy import text

    from core.db.engine import session_scope

    shop_a = f"tenant-a-{uuid.uuid4().hex[:6]}.myshopify.com"
    shop_b = f"tenant-b-{uuid.uuid4().hex[:6]}.myshopify.com"
    await shop_connection(shop_a)
    await shop_connection(shop_b)
    response = await deliver(api, shop_a, json.dumps(ORDER).encode())
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    await run_worker()
    async with session_scope() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT c.external_account_id, count(o.id) FROM connections c "
                    "LEFT JOIN shopify_orders o ON o.connection_id = c.id "
                    "WHERE c.external_account_id IN (:a, :b) GROUP BY 1"
                ),
                {"a": shop_a, "b": shop_b},
            )
        ).all()
    assert dict(rows) == {shop_a: 1, shop_b: 0}
