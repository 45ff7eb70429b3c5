"""Alert webhooks of a workspace: register (the signing secret is shown once), list, remove, delivery log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from core.alerts import webhooks
from core.alerts.urls import WebhookUrlRejected
from core.api.deps import SessionDep, WorkspaceDep
from core.api.errors import ApiError, not_found
from core.api.schemas import InputModel

router = APIRouter(prefix="/workspaces/{workspace_id}/alerts", tags=["alerts"])


class WebhookCreate(InputModel):
    """A URL that receives signed events (https to a public host in production)."""

    url: str = Field(max_length=2000, examples=["https://hooks.example.com/metricx"])
    description: str | None = Field(default=None, max_length=200)


class WebhookPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    description: str | None
    created_at: datetime


class WebhookCreated(WebhookPublic):
    """The new webhook with its secret: verify ``X-Metricx-Signature`` with it. Shown only now."""

    secret: str


class DeliveryPublic(BaseModel):
    """One event sent to one webhook, with its attempts so far."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    webhook_id: uuid.UUID
    event: str
    connection_id: uuid.UUID | None
    status: str = Field(description="pending | retrying | delivered | failed")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    payload: dict[str, Any]


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
async def create_webhook(body: WebhookCreate, workspace: WorkspaceDep, session: SessionDep) -> WebhookCreated:
    """Register a webhook for connection alerts (reconnect required, error, recovered, token expiring)."""
    try:
        hook, secret = await webhooks.create_webhook(session, workspace.id, body.url, body.description)
    except WebhookUrlRejected as exc:
        raise ApiError(422, "webhook_url_rejected", exc.message) from None
    return WebhookCreated(**WebhookPublic.model_validate(hook).model_dump(), secret=secret)


@router.get("/webhooks", response_model=list[WebhookPublic])
async def list_webhooks(workspace: WorkspaceDep, session: SessionDep) -> list[WebhookPublic]:
    """The workspace's webhooks (never their secrets)."""
    return [WebhookPublic.model_validate(h) for h in await webhooks.list_webhooks(session, workspace.id)]


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(
    workspace: WorkspaceDep, session: SessionDep, webhook_id: Annotated[uuid.UUID, Path()]
) -> Response:
    """Stop sending to a webhook; its delivery log goes with it."""
    if not await webhooks.delete_webhook(session, workspace.id, webhook_id):
        raise not_found("webhook")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/deliveries", response_model=list[DeliveryPublic])
async def list_deliveries(
    workspace: WorkspaceDep,
    session: SessionDep,
    webhook_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryPublic]:
    """Recent deliveries, newest first: what was sent, how often, and what the receiver answered."""
    rows = await webhooks.list_deliveries(session, workspace.id, webhook_id=webhook_id, limit=limit)
    return [DeliveryPublic.model_validate(d) for d in rows]
