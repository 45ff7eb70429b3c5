"""What a sync works on: the connection, its decrypted credentials, its provider, and their upkeep.

Shared by the engine, the core's fetch work and plugin jobs' :class:`~core.sync.context.SyncContext`;
it knows nothing of jobs, retries or plugins.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from core.context import provider_context as build_provider_context
from core.crypto import decrypt, encrypt
from core.db.engine import session_scope
from core.db.models import Connection, Credential
from core.providers import AccountRef, Credentials, Provider, ProviderContext
from core.sync import status


@dataclass
class Loaded:
    """The connection a try works on, its decrypted credentials and its provider."""

    connection: Connection
    credentials: Credentials
    provider: Provider


def account_ref(conn: Connection) -> AccountRef:
    """The provider-facing view of a connection."""
    return AccountRef(
        connection_id=str(conn.id),
        workspace_id=str(conn.workspace_id),
        external_account_id=conn.external_account_id,
        timezone=conn.timezone or "UTC",
        currency=conn.currency,
        config=dict(conn.config or {}),
    )


def provider_context(ctx: dict[str, Any], loaded: Loaded) -> ProviderContext:
    """The one place a sync's ProviderContext (HTTP, the account's limiter, the cache) is built.

    The limiter covers every throttle scope of the connection; its account scope is trusted when an
    earlier sync verified it with these credentials (``connections.throttle_scopes``).
    """
    conn = loaded.connection
    return build_provider_context(
        redis=ctx["redis"],
        client=ctx["http"],
        provider=loaded.provider,
        account=account_ref(conn),
        settings=ctx.get("settings"),
        credentials=loaded.credentials,
        stored=conn.throttle_scopes or (),
        credential_store=ConnectionCredentials(conn.id),
    )


async def store_credentials(connection_id: uuid.UUID, creds: Credentials) -> None:
    """Store a connection's refreshed tokens, encrypted."""
    async with session_scope() as session:
        await session.execute(
            update(Credential)
            .where(Credential.connection_id == connection_id)
            .values(
                access_token_enc=encrypt(creds.access_token),
                refresh_token_enc=encrypt(creds.refresh_token),
                expires_at=creds.expires_at,
                scopes=" ".join(creds.scopes) or None,
                updated_at=status.utcnow(),
            )
        )


async def load_credentials(connection_id: uuid.UUID) -> Credentials:
    """A connection's stored credentials, decrypted (empty when it has none)."""
    async with session_scope() as session:
        cred = await session.scalar(select(Credential).where(Credential.connection_id == connection_id))
    if cred is None:
        return Credentials()
    return Credentials(
        access_token=decrypt(cred.access_token_enc),
        refresh_token=decrypt(cred.refresh_token_enc),
        expires_at=cred.expires_at,
        scopes=tuple((cred.scopes or "").split()),
    )


@dataclass(frozen=True, slots=True)
class ConnectionCredentials:
    """``ProviderContext.credentials`` of a sync: the connection's row in ``credentials``."""

    connection_id: uuid.UUID

    async def load(self) -> Credentials:
        return await load_credentials(self.connection_id)

    async def save(self, credentials: Credentials) -> None:
        await store_credentials(self.connection_id, credentials)


async def refresh_account_facts(
    loaded: Loaded, *, name: str | None, timezone: str, currency: str | None
) -> None:
    """Store the account's timezone and currency (and its name, if it has none) when they changed."""
    conn = loaded.connection
    changes: dict[str, Any] = {"timezone": timezone, "currency": currency}
    if name and not conn.name:
        changes["name"] = name
    if any(getattr(conn, k) != v for k, v in changes.items()):
        async with session_scope() as session:
            await status.update_account_facts(session, conn.id, changes)
        for key, value in changes.items():
            setattr(conn, key, value)
