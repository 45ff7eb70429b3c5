"""Workspaces, API keys, connections with encrypted credentials, key rotation, and hard deletes."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto import encrypt, get_cipher, rotate
from core.db.models import ApiKey, Connection, ConnectSession, Credential, MetricSnapshot, Workspace
from core.oauth import normalize_account_id
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


async def delete_snapshots(session: AsyncSession, connection_ids: Sequence[uuid.UUID]) -> int:
    """Delete the snapshots of connections this transaction has deleted; the rows deleted.

    ``metric_snapshots`` has no foreign keys (migration 0011): nothing cascades into it, so every
    hard delete of a connection, or of a workspace with its connections, calls this after deleting
    them (their row locks make a snapshot write still in flight finish first; its rows go too).
    """
    if not connection_ids:
        return 0
    statement = delete(MetricSnapshot).where(MetricSnapshot.connection_id.in_(list(connection_ids)))
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> bool:
    """Delete a workspace and everything of it (keys, connections, entities, runs, snapshots);
    False when there is no such workspace."""
    # Locked first: no connection can be added to it meanwhile (that insert's key check waits).
    found = await session.scalar(select(Workspace.id).where(Workspace.id == workspace_id).with_for_update())
    if found is None:
        return False
    gone = await session.scalars(
        delete(Connection).where(Connection.workspace_id == workspace_id).returning(Connection.id)
    )
    connection_ids = list(gone.all())
    await session.execute(delete(Workspace).where(Workspace.id == workspace_id))
    await delete_snapshots(session, connection_ids)
    return True


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
    grant_id: uuid.UUID | None = None,
) -> Connection:
    """A connection with its credentials encrypted at rest.

    The account id is stored in the provider's one form (``core.oauth.normalize_account_id``), so
    the same account cannot be connected twice under two spellings. ``grant_id`` names the connect
    flow whose tokens these are (shared by every account picked from it).
    """
    external_account_id = stored_account_id(provider, external_account_id)
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
            grant_id=grant_id,
        )
    )
    await session.flush()
    return connection


def stored_account_id(provider: str, raw: str) -> str:
    """``raw`` in the stored form of ``provider`` (as is when the provider is not installed)."""
    from core.plugins import get_registry

    return normalize_account_id(get_registry().providers.get(provider), raw)


async def store_credentials(
    session: AsyncSession, connection_id: uuid.UUID, creds: Credentials, *, grant_id: uuid.UUID | None = None
) -> None:
    """Write a connection's credentials (encrypted), creating the row a deleted connection lost.

    ``grant_id`` names the connect flow the tokens came from (connections sharing it are renewed
    together); None for tokens given by hand."""
    values = {
        "grant_id": grant_id,
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
    # Connect flows hold tokens for an hour at most, but one under way must survive the rotation too.
    flows = (
        (
            await session.execute(
                select(ConnectSession).where(
                    or_(
                        ConnectSession.access_token_enc.is_not(None),
                        ConnectSession.refresh_token_enc.is_not(None),
                        ConnectSession.code_verifier_enc.is_not(None),
                    )
                )
            )
        )
        .scalars()
        .all()
    )
    for flow in flows:
        await session.execute(
            update(ConnectSession)
            .where(ConnectSession.id == flow.id)
            .values(
                access_token_enc=rotate(flow.access_token_enc, cipher),
                refresh_token_enc=rotate(flow.refresh_token_enc, cipher),
                code_verifier_enc=rotate(flow.code_verifier_enc, cipher),
            )
        )
    return len(rows) + len(flows)
