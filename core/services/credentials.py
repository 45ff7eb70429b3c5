"""Give a connection new credentials, keeping its id and history (reconnect).

Thin placeholder with the signature the reconnect work (branch r17) owns; the integrator keeps that
body. The connect flow (``core/services/connect.py``) calls it for ``reconnect=<connection_id>``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import encrypt
from core.db.models import Connection, Credential
from core.errors import ConfigError
from core.state import SyncStatus


class CredentialsMismatch(ConfigError):
    """The new credentials do not reach the connection's account (the API's 409)."""


async def replace_credentials(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    provider: str,
    credentials: dict[str, Any],
) -> Connection:
    """Store ``credentials`` (access_token, refresh_token, expires_at, scopes, grant_id) for the
    connection, encrypted, and put it back to ``idle``."""
    connection = await session.scalar(
        select(Connection).where(
            Connection.id == connection_id,
            Connection.workspace_id == workspace_id,
            Connection.provider == provider,
        )
    )
    if connection is None:
        raise CredentialsMismatch("the connection to reconnect was not found in this workspace")
    expires_at: datetime | None = credentials.get("expires_at")
    values = {
        "access_token_enc": encrypt(credentials.get("access_token")),
        "refresh_token_enc": encrypt(credentials.get("refresh_token")),
        "expires_at": expires_at,
        "scopes": " ".join(credentials.get("scopes") or ()) or None,
        "grant_id": credentials.get("grant_id"),
    }
    updated = await session.execute(
        update(Credential).where(Credential.connection_id == connection.id).values(**values)
    )
    if not getattr(updated, "rowcount", 0):
        session.add(Credential(connection_id=connection.id, **values))
    connection.sync_status = SyncStatus.idle
    connection.last_sync_error = None
    connection.last_error_kind = None
    await session.flush()
    return connection
