"""The simulator's webhook sender: POSTs a topic's body (an order, a deletion, a compliance request) as
Shopify does, signed with the app secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx


def sign(body: bytes, secret: str) -> str:
    """base64(HMAC-SHA256(body, secret)), the value of ``X-Shopify-Hmac-Sha256``."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def send_order_webhook(
    url: str,
    shop_domain: str,
    order: dict[str, Any],
    *,
    secret: str,
    topic: str = "orders/updated",
    webhook_id: str | None = None,
    times: int = 1,
    bad_signature: bool = False,
    api_version: str = "2026-10",
    client: httpx.AsyncClient | None = None,
) -> list[int]:
    """Deliver one webhook (``order``: the topic's body) ``times`` times (same id, as Shopify's
    retries); returns the status codes."""
    body = json.dumps(order, separators=(",", ":")).encode()
    signature = sign(body, "wrong-" + secret if bad_signature else secret)
    delivery = webhook_id or str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": signature,
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-Webhook-Id": delivery,
        "X-Shopify-Event-Id": delivery,
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
    }
    own = client is None
    http = client or httpx.AsyncClient(timeout=10)
    try:
        return [(await http.post(url, content=body, headers=headers)).status_code for _ in range(times)]
    finally:
        if own:
            await http.aclose()
