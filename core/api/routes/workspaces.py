"""Workspaces (operator) and their API keys (operator or the workspace itself)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, status
from sqlalchemy import func, select

from core.api.deps import OperatorDep, PageDep, SessionDep, WorkspaceAdminDep
from core.api.errors import documented, not_found
from core.api.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    Page,
    WorkspaceCreate,
    WorkspacePublic,
)
from core.db.models import ApiKey, Workspace
from core.services import create_api_key, create_workspace

router = APIRouter(prefix="/workspaces", tags=["workspaces"], responses=documented(403))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WorkspacePublic)
async def create(body: WorkspaceCreate, session: SessionDep, _: OperatorDep) -> Workspace:
    """Create a workspace (operator key)."""
    workspace = await create_workspace(session, body.name)
    await session.refresh(workspace)
    return workspace


@router.get("", response_model=Page[WorkspacePublic])
async def list_workspaces(session: SessionDep, _: OperatorDep, page: PageDep) -> Page[WorkspacePublic]:
    """Every workspace, oldest first (operator key)."""
    total = await session.scalar(select(func.count()).select_from(Workspace)) or 0
    rows = await session.scalars(
        select(Workspace).order_by(Workspace.created_at, Workspace.id).limit(page.limit).offset(page.offset)
    )
    return page.page([WorkspacePublic.model_validate(w) for w in rows], total)


@router.get("/{workspace_id}", response_model=WorkspacePublic)
async def get(workspace: WorkspaceAdminDep) -> Workspace:
    """One workspace (its own key, or the operator)."""
    return workspace


@router.post("/{workspace_id}/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_key(body: ApiKeyCreate, workspace: WorkspaceAdminDep, session: SessionDep) -> ApiKeyCreated:
    """A new API key for the workspace; the key is in this response only, never again."""
    key, plain = await create_api_key(session, workspace.id, body.name)
    await session.refresh(key)
    return ApiKeyCreated(**ApiKeyPublic.model_validate(key).model_dump(), key=plain)


@router.get("/{workspace_id}/api-keys", response_model=Page[ApiKeyPublic])
async def list_keys(workspace: WorkspaceAdminDep, session: SessionDep, page: PageDep) -> Page[ApiKeyPublic]:
    """The workspace's keys (prefixes only)."""
    where = ApiKey.workspace_id == workspace.id
    total = await session.scalar(select(func.count()).select_from(ApiKey).where(where)) or 0
    rows = await session.scalars(
        select(ApiKey)
        .where(where)
        .order_by(ApiKey.created_at, ApiKey.id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return page.page([ApiKeyPublic.model_validate(k) for k in rows], total)


@router.delete("/{workspace_id}/api-keys/{key_id}", response_model=ApiKeyPublic)
async def revoke_key(key_id: uuid.UUID, workspace: WorkspaceAdminDep, session: SessionDep) -> ApiKey:
    """Revoke a key: it stops working at once. Revoking twice is harmless."""
    key = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace.id))
    if key is None:
        raise not_found("api_key")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        await session.flush()
    return key
