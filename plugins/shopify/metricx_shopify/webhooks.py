"""Shopify webhooks: orders, deletions, the uninstall and the mandatory compliance topics.

Mounted by the core API under ``/v1/plugins/shopify``, so Shopify posts to
``/v1/plugins/shopify/webhooks``. The signature is HMAC-SHA256 of the raw body with an app's
secret, compared in constant time against every configured secret (several apps, custom apps with
their own secret). A delivery is routed by ``X-Shopify-Shop-Domain`` only to connections whose
stored shop is that domain; a connection stores a shop only after its token proved it (the
provider's ``verified_shop``), so no tenant receives another tenant's shop. Deliveries are
deduplicated on ``X-Shopify-Event-Id`` (the same event retried, or delivered to two
subscriptions) in the transaction that applies them: a retry is a no-op, a failed apply leaves the
id free for Shopify's next retry.

- ``orders/create``, ``orders/updated``, ``orders/paid``, ``orders/cancelled``, ``orders/edited``:
  upsert the order;
- ``orders/delete`` / ``products/delete`` / ``customers/delete``: delete the row (and line items);
- ``app/uninstalled``: the shop's connections become ``disconnected``, credentials are dropped;
- ``customers/redact``: the customer's row is deleted; their orders lose e-mail, customer and
  addresses, in the columns and in ``raw``;
- ``shop/redact``: every row of the shop is deleted;
- ``customers/data_request``: acknowledged and logged (what is held: the customer's row and orders).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from core import PayloadError, load_json, plugin_session
from metricx_shopify import tables
from metricx_shopify.mapping import opt_id, order_row
from metricx_shopify.settings import ShopifySettings, get_shopify_settings
from metricx_shopify.store import connections_for_shop, upsert_orders

log = structlog.get_logger(__name__, component="SHOPIFY_WEBHOOK")

ORDER_TOPICS = frozenset(
    {"orders/create", "orders/updated", "orders/paid", "orders/cancelled", "orders/edited"}
)
DELETE_TOPICS = {
    "orders/delete": tables.orders,
    "products/delete": tables.products,
    "customers/delete": tables.customers,
}
COMPLIANCE_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})
#: Personal data an order's ``raw`` may hold (REST webhook and normalised GraphQL shapes).
PERSONAL_KEYS = (
    "email",
    "contact_email",
    "phone",
    "customer",
    "billing_address",
    "shipping_address",
    "note",
    "browser_ip",
    "client_details",
)

router = APIRouter(tags=["shopify"])


def sign(body: bytes, secret: str) -> str:
    """``X-Shopify-Hmac-Sha256`` of a body: base64(HMAC-SHA256(body, secret))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(body: bytes, signature: str | None, secret: str) -> bool:
    """True when ``signature`` is the body's HMAC under ``secret`` (constant-time comparison)."""
    if not signature:
        return False
    return hmac.compare_digest(sign(body, secret).encode(), signature.strip().encode())


def _secrets(settings: ShopifySettings) -> list[str]:
    found = [settings.webhook_secret, settings.client_secret, *settings.webhook_secrets]
    return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]


def _answer(status_code: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status_code)


async def _record_delivery(session: Any, event_id: str, topic: str, shop: str) -> bool:
    wd = tables.webhook_deliveries
    stmt = (
        insert(wd)
        .values(webhook_id=event_id[:128], topic=topic[:64], shop_domain=shop[:255])
        .on_conflict_do_nothing(index_elements=[wd.c.webhook_id])
        .returning(wd.c.webhook_id)
    )
    return (await session.execute(stmt)).first() is not None


@router.post("/webhooks")
async def receive_webhook(request: Request) -> JSONResponse:
    """Receive one Shopify webhook: 401 on a bad signature, 422 for a signed body that cannot be
    stored, 200 for everything it accepts."""
    secrets = _secrets(get_shopify_settings())
    if not secrets:
        return _answer(503, detail="Shopify webhooks are not configured (set METRICX_SHOPIFY_WEBHOOK_SECRET)")
    body = await request.body()
    signature = request.headers.get("X-Shopify-Hmac-Sha256")
    if not any(verify(body, signature, secret) for secret in secrets):
        log.warning("webhook_rejected", reason="bad signature")
        return _answer(401, detail="invalid webhook signature")
    topic = request.headers.get("X-Shopify-Topic", "")
    shop = request.headers.get("X-Shopify-Shop-Domain", "").strip().lower()
    event_id = request.headers.get("X-Shopify-Event-Id") or request.headers.get("X-Shopify-Webhook-Id")
    known = ORDER_TOPICS | DELETE_TOPICS.keys() | COMPLIANCE_TOPICS | {"app/uninstalled"}
    if topic not in known:
        return _answer(200, status="ignored", reason=f"topic {topic!r} is not handled")
    try:
        payload = load_json(body)
        if not isinstance(payload, dict):
            raise PayloadError("the payload is not a JSON object")
        order = order_row(payload) if topic in ORDER_TOPICS else None
    except (ValueError, PayloadError) as exc:
        # Signed but unreadable or unstorable (wrong types, deep nesting, huge numbers, NUL, year 1):
        # the sender's mistake, a 422 naming it (issue 19), never a 500.
        return _unreadable(topic, shop, str(exc))
    try:
        return await _apply(topic, shop, event_id, payload, order)
    except PayloadError as exc:
        return _unreadable(topic, shop, str(exc))
    except DBAPIError as exc:
        # SQLSTATE class 22 (data exception): a value the table cannot hold, e.g. too long for its column.
        if not str(getattr(exc.orig, "sqlstate", "") or "").startswith("22"):
            raise
        return _unreadable(topic, shop, str(exc.orig).splitlines()[0])


def _unreadable(topic: str, shop: str, error: str) -> JSONResponse:
    log.warning("webhook_unreadable", topic=topic, shop=shop, error=error[:200])
    return _answer(422, detail=f"the {topic or 'webhook'} payload cannot be stored: {error[:200]}")


async def _apply(
    topic: str, shop: str, event_id: str | None, payload: dict[str, Any], order: Any
) -> JSONResponse:
    targets = await connections_for_shop(shop)
    if not targets:
        log.info("webhook_unmatched", topic=topic, shop=shop)
        return _answer(200, status="ignored", reason="no connection for this shop")
    connection_ids = [c for _, c in targets]
    async with plugin_session() as session:
        if event_id and not await _record_delivery(session, event_id, topic, shop):
            log.info("webhook_duplicate", topic=topic, shop=shop, event_id=event_id)
            return _answer(200, status="duplicate")
        if order is not None:
            written = 0
            for workspace_id, connection_id in targets:
                written += len(await upsert_orders(session, workspace_id, connection_id, [order]))
            result: dict[str, Any] = {"written": written}
        elif topic in DELETE_TOPICS:
            result = await _delete(session, DELETE_TOPICS[topic], connection_ids, payload)
        elif topic == "app/uninstalled":
            result = await _uninstall(session, connection_ids)
        elif topic == "customers/redact":
            result = await _redact_customer(session, connection_ids, payload)
        elif topic == "shop/redact":
            result = await _redact_shop(session, connection_ids)
        else:  # customers/data_request: what we hold is the customer's row and their orders
            result = {"data_request": True}
    log.info("webhook_applied", topic=topic, shop=shop, connections=len(targets), **result)
    return _answer(200, status="ok", **result)


def _payload_id(payload: dict[str, Any], what: str) -> int:
    number = opt_id(payload.get("id"), what)
    if number is None:
        raise PayloadError(f"{what}: the payload has no id")
    return number


async def _delete(
    session: Any, table: Any, connection_ids: list[uuid.UUID], payload: dict[str, Any]
) -> dict[str, Any]:
    shopify_id = _payload_id(payload, table.name)
    where = (table.c.connection_id.in_(connection_ids), table.c.shopify_id == shopify_id)
    if table is tables.orders:
        ids = select(table.c.id).where(*where)
        await session.execute(delete(tables.line_items).where(tables.line_items.c.order_id.in_(ids)))
    deleted = (await session.execute(delete(table).where(*where))).rowcount
    return {"deleted": deleted}


async def _uninstall(session: Any, connection_ids: list[uuid.UUID]) -> dict[str, Any]:
    """The shop removed the app: its tokens are dead. Disconnect and drop the stored credentials."""
    params = {"ids": connection_ids}
    await session.execute(
        text("UPDATE connections SET status = 'disconnected' WHERE id = ANY(:ids)"),
        params,
    )
    await session.execute(text("DELETE FROM credentials WHERE connection_id = ANY(:ids)"), params)
    await session.execute(delete(tables.tokens).where(tables.tokens.c.connection_id.in_(connection_ids)))
    return {"disconnected": len(connection_ids)}


async def _redact_customer(
    session: Any, connection_ids: list[uuid.UUID], payload: dict[str, Any]
) -> dict[str, Any]:
    """Remove one customer's personal data from every table: their row, and from their orders the
    e-mail, the customer link and every personal key of ``raw`` (line items hold none)."""
    customer: dict[str, Any] = payload["customer"] if isinstance(payload.get("customer"), dict) else {}
    customer_id = opt_id(customer.get("id"), "customers/redact customer")
    email = customer.get("email") if isinstance(customer.get("email"), str) else None
    order_ids = [
        opt_id(o, "customers/redact orders_to_redact") for o in payload.get("orders_to_redact") or []
    ]
    if customer_id is None and not email:
        raise PayloadError("customers/redact: the payload names no customer id or e-mail")
    c, o = tables.customers, tables.orders
    matches: list[Any] = [c.c.shopify_id == customer_id] if customer_id is not None else []
    if email:
        matches.append(c.c.email == email)
    deleted = (
        await session.execute(delete(c).where(c.c.connection_id.in_(connection_ids), or_(*matches)))
    ).rowcount
    order_matches: list[Any] = [o.c.shopify_id.in_([i for i in order_ids if i is not None])]
    if customer_id is not None:
        order_matches.append(o.c.customer_shopify_id == customer_id)
    if email:
        order_matches.append(o.c.email == email)
    raw: Any = o.c.raw
    for key in PERSONAL_KEYS:
        raw = raw.op("-")(key)
    redacted = (
        await session.execute(
            update(o)
            .where(o.c.connection_id.in_(connection_ids), or_(*order_matches))
            .values(email=None, customer_shopify_id=None, raw=raw)
        )
    ).rowcount
    return {"customers_deleted": deleted, "orders_redacted": redacted}


async def _redact_shop(session: Any, connection_ids: list[uuid.UUID]) -> dict[str, Any]:
    """48 hours after an uninstall: every row of the shop goes."""
    removed = 0
    for table in (tables.line_items, tables.orders, tables.customers, tables.products, tables.sync_state):
        removed += (
            await session.execute(delete(table).where(table.c.connection_id.in_(connection_ids)))
        ).rowcount
    return {"rows_deleted": removed}
