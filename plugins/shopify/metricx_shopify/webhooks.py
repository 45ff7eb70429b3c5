"""Shopify webhooks: orders, deletions, the uninstall and the mandatory compliance topics.

Mounted by the core API under ``/v1/plugins/shopify``, so Shopify posts to
``/v1/plugins/shopify/webhooks``. The signature is HMAC-SHA256 of the raw body with an app's
secret, compared in constant time against every configured secret (several apps, custom apps with
their own secret). A delivery is routed by ``X-Shopify-Shop-Domain`` only to connections whose
stored shop is that domain; a connection stores a shop only after its token proved it (the
provider's ``verified_shop``), so no tenant receives another tenant's shop. Deliveries are
deduplicated on ``X-Shopify-Event-Id`` (the same event retried, or delivered to two
subscriptions) in the transaction that stores them in ``shopify_webhook_inbox``; the route then
enqueues ``shopify.apply_webhook(inbox_id)`` and answers 200 at once. The job applies the row and
marks it applied in one transaction; a failure leaves it pending for arq's retry and, after the
last try, for the hourly fan-out. A signed payload that cannot be stored is refused (422) in the
route, never in the job.

- ``orders/create``, ``orders/updated``, ``orders/paid``, ``orders/cancelled``: upsert the order;
- ``orders/edited``: its body is the edit (``{"order_edit": {"order_id": ..., "line_items":
  {"additions", "removals"}}}``), not the order, so it queues the shop's store sync, which reads
  the edited order again (its ``updated_at`` moved); Shopify also sends ``orders/updated`` for it;
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
from arq import Retry
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, func, null, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from core import PayloadError, enqueue_plugin_job, load_json, plugin_session
from metricx_shopify import tables
from metricx_shopify.mapping import opt_id, order_row
from metricx_shopify.settings import ShopifySettings, get_shopify_settings
from metricx_shopify.store import connections_for_shop, upsert_orders

log = structlog.get_logger(__name__, component="SHOPIFY_WEBHOOK")

ORDER_TOPICS = frozenset({"orders/create", "orders/updated", "orders/paid", "orders/cancelled"})
#: Carries the edit, not the order: the order is read again by the store sync.
EDIT_TOPIC = "orders/edited"
DELETE_TOPICS = {
    "orders/delete": tables.orders,
    "products/delete": tables.products,
    "customers/delete": tables.customers,
}
COMPLIANCE_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})
KNOWN_TOPICS = ORDER_TOPICS | DELETE_TOPICS.keys() | COMPLIANCE_TOPICS | {EDIT_TOPIC, "app/uninstalled"}
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


APPLY_JOB = "shopify.apply_webhook"


def inbox_job_id(inbox_id: int, attempt: str = "0") -> str:
    """The arq job id of one inbox row's apply (``attempt``: "0" from the route, the tick's slot
    when the fan-out enqueues it again)."""
    return f"shopify:webhook:{inbox_id}:{attempt}"


@router.post("/webhooks")
async def receive_webhook(request: Request) -> JSONResponse:
    """Receive one Shopify webhook: 401 on a bad signature, 422 for a signed body that cannot be
    stored, else 200 as soon as the delivery is in ``shopify_webhook_inbox`` (the job applies it)."""
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
    if topic not in KNOWN_TOPICS:
        return _answer(200, status="ignored", reason=f"topic {topic!r} is not handled")
    try:
        payload = load_json(body)
        if not isinstance(payload, dict):
            raise PayloadError("the payload is not a JSON object")
        validate(topic, payload)
    except (ValueError, PayloadError) as exc:
        # Signed but unreadable or unstorable (wrong types, deep nesting, huge numbers, NUL, year 1):
        # the sender's mistake, a 422 naming it (issue 19), never a 500. Decided here, not in the job.
        return _unreadable(topic, shop, str(exc))
    try:
        inbox_id = await _store(topic, shop, event_id, payload)
    except DBAPIError as exc:
        # SQLSTATE class 22 (data exception): a value the inbox cannot hold.
        if not str(getattr(exc.orig, "sqlstate", "") or "").startswith("22"):
            raise
        return _unreadable(topic, shop, str(exc.orig).splitlines()[0])
    if inbox_id is None:
        log.info("webhook_duplicate", topic=topic, shop=shop, event_id=event_id)
        return _answer(200, status="duplicate")
    try:
        await enqueue_plugin_job(APPLY_JOB, inbox_id, job_id=inbox_job_id(inbox_id))
    except Exception as exc:
        log.warning(
            "webhook_enqueue_failed", topic=topic, shop=shop, inbox_id=inbox_id, error=type(exc).__name__
        )
    log.info("webhook_accepted", topic=topic, shop=shop, inbox_id=inbox_id)
    return _answer(200, status="accepted")


def validate(topic: str, payload: dict[str, Any]) -> None:
    """Everything that can make a signed payload unusable, checked without the database: the job
    that applies it later must not find the sender's mistake (the sender no longer hears of it)."""
    if topic in ORDER_TOPICS:
        order, lines = order_row(payload)
        _fits(tables.orders, order)
        for line in lines or []:
            _fits(tables.line_items, line)
    elif topic in DELETE_TOPICS:
        _payload_id(payload, DELETE_TOPICS[topic].name)
    elif topic == EDIT_TOPIC:
        _edited_order_id(payload)
    elif topic == "customers/redact":
        _redaction_target(payload)


def _fits(table: Any, row: dict[str, Any]) -> None:
    for name, value in row.items():
        column = table.c.get(name)
        length = getattr(getattr(column, "type", None), "length", None)
        if length is not None and isinstance(value, str) and len(value) > length:
            raise PayloadError(f"{name} is longer than {length} characters")


async def _store(topic: str, shop: str, event_id: str | None, payload: dict[str, Any]) -> int | None:
    """The delivery's dedupe record and its inbox row, in one short transaction (two statements,
    whatever the payload holds). None when the event was delivered before."""
    async with plugin_session() as session:
        if event_id and not await _record_delivery(session, event_id, topic, shop):
            return None
        inbox = tables.webhook_inbox
        stmt = (
            insert(inbox)
            .values(
                topic=topic[:64],
                shop_domain=shop[:255],
                event_id=event_id[:128] if event_id else None,
                payload=payload,
            )
            .returning(inbox.c.id)
        )
        return int((await session.execute(stmt)).scalar_one())


def _unreadable(topic: str, shop: str, error: str) -> JSONResponse:
    log.warning("webhook_unreadable", topic=topic, shop=shop, error=error[:200])
    return _answer(422, detail=f"the {topic or 'webhook'} payload cannot be stored: {error[:200]}")


async def apply_webhook(ctx: dict[str, Any], inbox_id: int) -> dict[str, Any]:
    """The job: apply one inbox row in one transaction that also marks it applied and drops its
    payload. A failure rolls all of it back: the row stays ``pending`` (attempts, error) and arq
    tries again with backoff; after the last try the hourly fan-out enqueues it again."""
    settings = get_shopify_settings()
    inbox = tables.webhook_inbox
    try:
        async with plugin_session() as session:
            if settings.webhook_apply_lock_timeout_ms:
                await session.execute(
                    text(f"SET LOCAL lock_timeout = {int(settings.webhook_apply_lock_timeout_ms)}")
                )
            row = (
                await session.execute(
                    select(inbox.c.topic, inbox.c.shop_domain, inbox.c.payload)
                    .where(inbox.c.id == inbox_id, inbox.c.status == "pending")
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if row is None:  # applied already, or another worker holds it
                return {"inbox_id": inbox_id, "status": "skipped"}
            result = await _apply(session, row.topic, row.shop_domain, row.payload)
            await session.execute(
                update(inbox)
                .where(inbox.c.id == inbox_id)
                .values(
                    status="applied", payload=null(), result=result, applied_at=func.now(), last_error=None
                )
            )
    except (PayloadError, DBAPIError) as exc:
        permanent = isinstance(exc, PayloadError) or str(
            getattr(getattr(exc, "orig", None), "sqlstate", "") or ""
        ).startswith("22")
        error = (str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)).splitlines()[0][:500]
        await _failed(inbox_id, error, permanent=permanent)
        if permanent:
            log.warning("webhook_apply_refused", inbox_id=inbox_id, error=error[:200])
            return {"inbox_id": inbox_id, "status": "failed"}
        return _retry(ctx, inbox_id, error, settings)
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        await _failed(inbox_id, error, permanent=False)
        return _retry(ctx, inbox_id, error, settings)
    log.info("webhook_applied", inbox_id=inbox_id, topic=row.topic, shop=row.shop_domain, **result)
    return {"inbox_id": inbox_id, "status": "applied", **result}


async def _failed(inbox_id: int, error: str, *, permanent: bool) -> None:
    inbox = tables.webhook_inbox
    values: dict[str, Any] = {"attempts": inbox.c.attempts + 1, "last_error": error}
    if permanent:
        values["status"] = "failed"
    async with plugin_session() as session:
        await session.execute(
            update(inbox).where(inbox.c.id == inbox_id, inbox.c.status == "pending").values(values)
        )


def _retry(ctx: dict[str, Any], inbox_id: int, error: str, settings: ShopifySettings) -> dict[str, Any]:
    tries = int(ctx.get("job_try") or 1)
    log.warning("webhook_apply_failed", inbox_id=inbox_id, job_try=tries, error=error[:200])
    if tries < settings.webhook_apply_max_tries:
        raise Retry(defer=settings.retry_backoff_s * 4**tries)
    return {"inbox_id": inbox_id, "status": "pending"}


async def _apply(session: Any, topic: str, shop: str, payload: dict[str, Any]) -> dict[str, Any]:
    targets = await connections_for_shop(shop)
    if not targets:
        log.info("webhook_unmatched", topic=topic, shop=shop)
        return {"ignored": "no connection for this shop"}
    connection_ids = [c for _, c in targets]
    if topic in ORDER_TOPICS:
        order = order_row(payload)
        written = 0
        for workspace_id, connection_id in targets:
            written += len(await upsert_orders(session, workspace_id, connection_id, [order]))
        return {"written": written}
    if topic in DELETE_TOPICS:
        return await _delete(session, DELETE_TOPICS[topic], connection_ids, payload)
    if topic == EDIT_TOPIC:
        return await _order_edited(targets, payload)
    if topic == "app/uninstalled":
        return await _uninstall(session, connection_ids)
    if topic == "customers/redact":
        return await _redact_customer(session, connection_ids, payload)
    if topic == "shop/redact":
        return await _redact_shop(session, connection_ids)
    return {"data_request": True}  # customers/data_request: what we hold is the customer's row and orders


def _payload_id(payload: dict[str, Any], what: str) -> int:
    number = opt_id(payload.get("id"), what)
    if number is None:
        raise PayloadError(f"{what}: the payload has no id")
    return number


def _edited_order_id(payload: dict[str, Any]) -> int:
    edit = payload.get("order_edit")
    if not isinstance(edit, dict):
        raise PayloadError("orders/edited: the payload has no order_edit object")
    number = opt_id(edit.get("order_id"), "order_edit")
    if number is None:
        raise PayloadError("orders/edited: order_edit has no order_id")
    return number


async def _order_edited(
    targets: list[tuple[uuid.UUID, uuid.UUID]], payload: dict[str, Any]
) -> dict[str, Any]:
    """An edit changed an order's lines and totals: the store sync reads the order again (the
    webhook carries only the edit's line deltas, not the new totals)."""
    from metricx_shopify.jobs import enqueue_store_sync  # jobs imports this module

    order_id = _edited_order_id(payload)
    for workspace_id, connection_id in targets:
        await enqueue_store_sync(str(connection_id), str(workspace_id))
    return {"order_edited": order_id, "store_syncs": len(targets)}


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


def _redaction_target(payload: dict[str, Any]) -> tuple[int | None, str | None, list[int | None]]:
    """(customer id, e-mail, order ids) a ``customers/redact`` names; PayloadError when it names none."""
    customer: dict[str, Any] = payload["customer"] if isinstance(payload.get("customer"), dict) else {}
    customer_id = opt_id(customer.get("id"), "customers/redact customer")
    email = customer.get("email") if isinstance(customer.get("email"), str) else None
    to_redact = payload.get("orders_to_redact") or []
    if not isinstance(to_redact, list):
        raise PayloadError("customers/redact: orders_to_redact is not a list")
    order_ids = [opt_id(o, "customers/redact orders_to_redact") for o in to_redact]
    if customer_id is None and not email:
        raise PayloadError("customers/redact: the payload names no customer id or e-mail")
    return customer_id, email, order_ids


async def _redact_customer(
    session: Any, connection_ids: list[uuid.UUID], payload: dict[str, Any]
) -> dict[str, Any]:
    """Remove one customer's personal data from every table: their row, and from their orders the
    e-mail, the customer link and every personal key of ``raw`` (line items hold none)."""
    customer_id, email, order_ids = _redaction_target(payload)
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
