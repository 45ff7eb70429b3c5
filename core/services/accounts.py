"""Workspaces, API keys, connections with encrypted credentials, and key rotation."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import encrypt, get_cipher, rotate
from core.db.models import ApiKey, Connection, Credential, Workspace
from core.providers import Credentials
from core.state import BUSY, ConnectionStatus, SyncStatus

KEY_PREFIX = "mx_"


def hash_key(key: str) -> str:
    """The stored form of an API key (SHA-256: keys are long random strings, not passwords)."""
    return hashlib.sha256(key.encode()).hexdigest()


async def create_workspace(session: AsyncSession, name: str) -> Workspace:
    workspace = Workspace(name=name)
    session.add(workspace)
    await session.flush()
    return workspace


async def create_api_key(
    session: AsyncSession, workspace_id: uuid.UUID, name: str | None = None
) -> tuple[ApiKey, str]:
    """A new key for the workspace; the plain key is returned once and never stored."""
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(workspace_id=workspace_id, name=name, prefix=plain[:10], key_hash=hash_key(plain))
    session.add(key)
    await session.flush()
    return key, plain


async def create_connection(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    provider: str,
    external_account_id: str,
    credentials: Credentials,
    *,
    name: str | None = None,
    timezone: str = "UTC",
    currency: str | None = None,
    config: dict[str, Any] | None = None,
) -> Connection:
    """A connection with its credentials encrypted at rest."""
    connection = Connection(
        workspace_id=workspace_id,
        provider=provider,
        external_account_id=external_account_id,
        name=name,
        timezone=timezone,
        currency=currency,
        config=config or {},
        status=ConnectionStatus.active,
        sync_status=SyncStatus.idle,
        total_syncs_attempted=0,
        total_syncs_succeeded=0,
    )
    session.add(connection)
    await session.flush()
    session.add(
        Credential(
            connection_id=connection.id,
            access_token_enc=encrypt(credentials.access_token),
            refresh_token_enc=encrypt(credentials.refresh_token),
            expires_at=credentials.expires_at,
            scopes=" ".join(credentials.scopes) or None,
        )
    )
    await session.flush()
    return connection


async def store_credentials(session: AsyncSession, connection_id: uuid.UUID, creds: Credentials) -> None:
    """Write a connection's credentials (encrypted), creating the row a deleted connection lost."""
    values = {
        "access_token_enc": encrypt(creds.access_token),
        "refresh_token_enc": encrypt(creds.refresh_token),
        "expires_at": creds.expires_at,
        "scopes": " ".join(creds.scopes) or None,
        "updated_at": datetime.now(UTC),
    }
    await session.execute(
        insert(Credential)
        .values(connection_id=connection_id, **values)
        .on_conflict_do_update(index_elements=[Credential.connection_id], set_=values)
    )


def restore(connection: Connection) -> None:
    """A connection given working credentials: active again (a paused one stays paused), its
    token error cleared, its throttle scopes re-verified by the next sync."""
    if connection.status == ConnectionStatus.disconnected:
        connection.status = ConnectionStatus.active
    if connection.sync_status not in BUSY:  # a sync already running keeps its status to the end
        connection.sync_status = SyncStatus.idle
        connection.last_sync_error = None
        connection.last_error_kind = None
    connection.throttle_scopes = []


async def rotate_credentials(session: AsyncSession) -> int:
    """Re-encrypt every stored token under the current (first) key; returns the rows rewritten."""
    cipher = get_cipher()
    rows = (await session.execute(select(Credential))).scalars().all()
    for cred in rows:
        await session.execute(
            update(Credential)
            .where(Credential.id == cred.id)
            .values(
                access_token_enc=rotate(cred.access_token_enc, cipher),
                refresh_token_enc=rotate(cred.refresh_token_enc, cipher),
            )
        )
    return len(rows)
