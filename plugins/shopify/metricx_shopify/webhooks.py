"""Order webhooks (``orders/create``, ``orders/updated``, ``orders/paid``): verify, deduplicate, upsert.

Mounted by the core API under ``/v1/plugins/shopify``, so Shopify posts to
``/v1/plugins/shopify/webhooks``. The signature is HMAC-SHA256 of the raw body
with the app secret, compared in constant time. The delivery id is recorded
in the same transaction as the upsert: a retried delivery is a no-op, and a
failed upsert leaves the id free for Shopify's next retry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from core import PayloadError, load_json, plugin_session
from metricx_shopify import tables
from metricx_shopify.mapping import order_row
from metricx_shopify.settings import get_shopify_settings
from metricx_shopify.store import connections_for_shop, upsert_orders

log = structlog.get_logger(__name__, component="SHOPIFY_WEBHOOK")

ORDER_TOPICS = frozenset({"orders/create", "orders/updated", "orders/paid"})

router = APIRouter(tags=["shopify"])


def sign(body: bytes, secret: str) -> str:
    """``X-Shopify-Hmac-Sha256`` of a body: base64(HMAC-SHA256(body, secret))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(body: bytes, signature: str | None, secret: str) -> bool:
    """True when ``signature`` is the body's HMAC under ``secret`` (constant-time comparison)."""
    if not signature:
        return False
    return hmac.compare_digest(sign(body, secret).encode(), signature.strip().encode())


def _answer(status_code: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status_code)


async def _record_delivery(session: Any, webhook_id: str, topic: str, shop: str) -> bool:
    wd = tables.webhook_deliveries
    stmt = (
        insert(wd)
        .values(webhook_id=webhook_id[:128], topic=topic[:64], shop_domain=shop[:255])
        .on_conflict_do_nothing(index_elements=[wd.c.webhook_id])
        .returning(wd.c.webhook_id)
    )
    return (await session.execute(stmt)).first() is not None


@router.post("/webhooks")
async def receive_webhook(request: Request) -> JSONResponse:
    """Receive one Shopify webhook: 401 on a bad signature, 200 (fast) for everything else it accepts."""
    secret = get_shopify_settings().webhook_secret
    if secret is None:
        return _answer(503, detail="Shopify webhooks are not configured (set METRICX_SHOPIFY_WEBHOOK_SECRET)")
    body = await request.body()
    if not verify(body, request.headers.get("X-Shopify-Hmac-Sha256"), secret.get_secret_value()):
        log.warning("webhook_rejected", reason="bad signature")
        return _answer(401, detail="invalid webhook signature")
    topic = request.headers.get("X-Shopify-Topic", "")
    shop = request.headers.get("X-Shopify-Shop-Domain", "").strip().lower()
    webhook_id = request.headers.get("X-Shopify-Webhook-Id") or request.headers.get("X-Shopify-Event-Id")
    if topic not in ORDER_TOPICS:
        return _answer(200, status="ignored", reason=f"topic {topic!r} is not handled")
    try:
        order = order_row(load_json(body))
    except (ValueError, PayloadError) as exc:
        # Signed but unreadable or unstorable (wrong types, deep nesting, huge numbers, NUL, year 1):
        # the sender's mistake, a 422 naming it (issue 19), never a 500.
        return _unreadable(topic, shop, str(exc))
    try:
        return await _apply(topic, shop, webhook_id, order)
    except DBAPIError as exc:
        # SQLSTATE class 22 (data exception): a value the table cannot hold, e.g. too long for its column.
        if not str(getattr(exc.orig, "sqlstate", "") or "").startswith("22"):
            raise
        return _unreadable(topic, shop, str(exc.orig).splitlines()[0])


def _unreadable(topic: str, shop: str, error: str) -> JSONResponse:
    log.warning("webhook_unreadable", topic=topic, shop=shop, error=error[:200])
    return _answer(422, detail=f"the order payload cannot be stored: {error[:200]}")


async def _apply(topic: str, shop: str, webhook_id: str | None, order: Any) -> JSONResponse:
    targets = await connections_for_shop(shop)
    if not targets:
        log.info("webhook_unmatched", topic=topic, shop=shop)
        return _answer(200, status="ignored", reason="no connection for this shop")
    async with plugin_session() as session:
        if webhook_id and not await _record_delivery(session, webhook_id, topic, shop):
            log.info("webhook_duplicate", topic=topic, shop=shop, webhook_id=webhook_id)
            return _answer(200, status="duplicate")
        written = 0
        for workspace_id, connection_id in targets:
            written += len(await upsert_orders(session, workspace_id, connection_id, [order]))
    log.info(
        "webhook_applied",
        topic=topic,
        shop=shop,
        order_id=order[0]["shopify_id"],
        connections=len(targets),
        written=written,
    )
    return _answer(200, status="ok", written=written)
