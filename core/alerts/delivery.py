"""The ``deliver_alert`` job: POST one signed event to one webhook; retry with backoff on failure.

Each attempt is its own job (``alert:{delivery}:{attempt}``), re-enqueued with a
growing delay, so a receiver that is down costs one short request per attempt and
never holds a sync. The delivery row is the log the API shows.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog

from core import __version__
from core.alerts.events import deliver_request
from core.alerts.signing import SIGNATURE_HEADER, sign
from core.alerts.urls import WebhookUrlRejected, check_webhook_url
from core.config import Settings, get_settings
from core.crypto import decrypt
from core.db.engine import session_scope
from core.db.models import AlertDelivery, AlertWebhook
from core.enqueue import enqueue_many

log = structlog.get_logger(__name__)
MAX_DELAY_S = 3600.0


def retry_delay_s(attempt: int, settings: Settings) -> float:
    """Delay before attempt ``attempt + 1``: base * 2^(attempt-1), capped at an hour."""
    return float(min(MAX_DELAY_S, settings.alert_retry_base_s * 2 ** max(0, attempt - 1)))


async def _post(
    ctx: dict[str, Any], url: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> httpx.Response:
    client: httpx.AsyncClient | None = ctx.get("http")
    if client is not None:
        return await client.post(url, content=body, headers=headers, timeout=timeout_s)
    async with httpx.AsyncClient(follow_redirects=False) as own:
        return await own.post(url, content=body, headers=headers, timeout=timeout_s)


async def _attempt(
    ctx: dict[str, Any], delivery: AlertDelivery, hook: AlertWebhook, settings: Settings
) -> tuple[int | None, str | None]:
    """One POST; returns (HTTP status or None, error or None)."""
    try:
        await check_webhook_url(hook.url, allow_private=settings.alert_webhooks_allow_private)
    except WebhookUrlRejected as exc:
        return None, exc.message
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"metricx/{__version__}",
        "X-Metricx-Event": delivery.event,
        "X-Metricx-Delivery": str(delivery.id),
        SIGNATURE_HEADER: sign(decrypt(hook.secret_enc) or "", body),
    }
    try:
        response = await _post(ctx, hook.url, body, headers, settings.alert_delivery_timeout_s)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500] if str(exc) else type(exc).__name__
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"the receiver answered {response.status_code}"


async def deliver_alert(ctx: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    """Send one delivery; on failure schedule the next attempt until ``alert_max_attempts``."""
    settings = ctx.get("settings") or get_settings()
    async with session_scope() as session:
        delivery = await session.get(AlertDelivery, uuid.UUID(delivery_id))
        hook = await session.get(AlertWebhook, delivery.webhook_id) if delivery else None
    if delivery is None or hook is None:
        return {"status": "gone"}
    if delivery.status in ("delivered", "failed"):
        return {"status": delivery.status}
    code, error = await _attempt(ctx, delivery, hook, settings)
    attempts = delivery.attempts + 1
    now = datetime.now(UTC)
    values: dict[str, Any] = {"attempts": attempts, "last_status_code": code, "last_error": error}
    retry_in = None
    if error is None:
        values.update(status="delivered", delivered_at=now, next_attempt_at=None)
    elif attempts >= settings.alert_max_attempts:
        values.update(status="failed", next_attempt_at=None)
    else:
        retry_in = retry_delay_s(attempts, settings)
        values.update(status="retrying", next_attempt_at=now + timedelta(seconds=retry_in))
    async with session_scope() as session:
        row = await session.get(AlertDelivery, delivery.id)
        if row is not None:
            for key, value in values.items():
                setattr(row, key, value)
    if retry_in is not None:
        await enqueue_many(ctx["redis"], [deliver_request(delivery.id, attempts + 1, retry_in)])
    log.info(
        "alert_delivery",
        delivery_id=delivery_id,
        status=values["status"],
        attempts=attempts,
        http_status=code,
    )
    return {"status": values["status"], "attempts": attempts}
