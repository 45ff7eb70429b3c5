"""Bearer authentication: workspace API keys (stored as hashes) and the operator key.

A key for workspace B used on workspace A's URLs sees "workspace not found",
exactly what a missing workspace looks like: no tenant learns about another.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.api.errors import ApiError, not_found
from core.config import get_settings
from core.db.models import ApiKey
from core.services import hash_key


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the operator, or a workspace through one of its keys."""

    operator: bool
    workspace_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header, or 401."""
    if not authorization:
        raise ApiError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <key>'")
    return token.strip()


def is_operator(token: str) -> bool:
    configured = get_settings().operator_key
    if configured is None or not configured.get_secret_value():
        return False
    return secrets.compare_digest(token.encode(), configured.get_secret_value().encode())


async def authenticate(session: AsyncSession, authorization: str | None) -> Principal:
    """Resolve the caller; an unknown or revoked key is 401."""
    token = bearer_token(authorization)
    if is_operator(token):
        return Principal(operator=True)
    # Two columns, no ORM object: this runs on every request.
    key = (
        await session.execute(
            select(ApiKey.workspace_id, ApiKey.id).where(
                ApiKey.key_hash == hash_key(token), ApiKey.revoked_at.is_(None)
            )
        )
    ).first()
    if key is None:
        raise unknown_key()
    return Principal(operator=False, workspace_id=key.workspace_id, key_id=key.id)


def unknown_key() -> ApiError:
    """The 401 of a key that is not a live workspace key."""
    return ApiError(401, "unauthorized", "the API key is unknown or revoked")


def require_operator(principal: Principal) -> None:
    if not principal.operator:
        raise ApiError(
            403, "operator_required", "this endpoint needs the operator key (METRICX_OPERATOR_KEY)"
        )


def require_workspace(principal: Principal, workspace_id: uuid.UUID, *, allow_operator: bool = False) -> None:
    """The caller may act on ``workspace_id``; anyone else is told it does not exist.

    The operator key manages workspaces and their API keys (``allow_operator``); a workspace's data
    needs one of its own keys: the operator gets 403 there, the same on every such route.
    """
    if principal.operator and allow_operator:
        return
    if principal.operator:
        raise ApiError(
            403,
            "workspace_key_required",
            "the operator key manages workspaces and their API keys; use a workspace API key for this route",
        )
    if principal.workspace_id != workspace_id:
        raise not_found("workspace")
