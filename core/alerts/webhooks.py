"""A workspace's alert webhooks and their delivery log (the service the API and the CLI share)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.alerts.urls import check_webhook_url
from core.config import get_settings
from core.crypto import encrypt
from core.db.models import AlertDelivery, AlertWebhook

#: Secrets start with this, so a leaked one is recognisable (and redacted from logs).
SECRET_PREFIX = "whsec_"


async def create_webhook(
    session: AsyncSession, workspace_id: uuid.UUID, url: str, description: str | None = None
) -> tuple[AlertWebhook, str]:
    """Register ``url``; returns the webhook and its signing secret (shown once, stored encrypted)."""
    await check_webhook_url(url, allow_private=get_settings().alert_webhooks_allow_private)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    hook = AlertWebhook(
        workspace_id=workspace_id, url=url, description=description, secret_enc=encrypt(secret)
    )
    session.add(hook)
    await session.flush()
    await session.refresh(hook)
    return hook, secret


async def list_webhooks(session: AsyncSession, workspace_id: uuid.UUID) -> Sequence[AlertWebhook]:
    """The workspace's webhooks, oldest first."""
    rows = await session.scalars(
        select(AlertWebhook)
        .where(AlertWebhook.workspace_id == workspace_id)
        .order_by(AlertWebhook.created_at)
    )
    return rows.all()


async def delete_webhook(session: AsyncSession, workspace_id: uuid.UUID, webhook_id: uuid.UUID) -> bool:
    """Remove a webhook (and its delivery log); False if the workspace has no such webhook."""
    result = await session.execute(
        delete(AlertWebhook)
        .where(AlertWebhook.id == webhook_id, AlertWebhook.workspace_id == workspace_id)
        .returning(AlertWebhook.id)
    )
    return result.first() is not None


async def list_deliveries(
    session: AsyncSession, workspace_id: uuid.UUID, *, webhook_id: uuid.UUID | None = None, limit: int = 50
) -> Sequence[AlertDelivery]:
    """The workspace's most recent deliveries, newest first."""
    query = select(AlertDelivery).where(AlertDelivery.workspace_id == workspace_id)
    if webhook_id is not None:
        query = query.where(AlertDelivery.webhook_id == webhook_id)
    rows = await session.scalars(query.order_by(AlertDelivery.created_at.desc()).limit(limit))
    return rows.all()
