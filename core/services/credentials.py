"""New credentials for an existing connection (reconnect): same id, history and sync_runs.

The API (``PUT .../connections/{id}/credentials``), the CLI (``metricx connections reconnect``) and
the OAuth connect flow (``reconnect=<id>``) all call :func:`replace_credentials`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.coverage import connection_coverage
from core.db.models import Connection
from core.enqueue import EnqueueResult
from core.errors import AuthError, ConfigError, PermanentError
from core.providers import Credentials, SyncMode
from core.reconcile import gap_mode
from core.services.accounts import restore, store_credentials
from core.services.connections import enqueue_syncs, installed_provider, validate_account
from core.state import ConnectionStatus
from core.sync.windows import local_today

log = structlog.get_logger(__name__)


class ConnectionNotFound(ConfigError):
    """No such connection in this workspace (or another workspace's)."""


class WrongAccount(ConfigError):
    """The new credentials do not reach the connection's account (a 409: the connection is unchanged)."""


@dataclass(frozen=True, slots=True)
class Reconnected:
    """A connection after :func:`replace_credentials`, and the catch-up sync it queued (if any)."""

    connection: Connection
    catch_up_mode: SyncMode | None
    catch_up: EnqueueResult | None
    days_missing: int


def credentials_from(data: Mapping[str, Any]) -> Credentials:
    """``{"access_token", "refresh_token", "expires_at", "scopes"}`` as :class:`Credentials`."""
    expires = data.get("expires_at")
    if isinstance(expires, str):
        expires = datetime.fromisoformat(expires)
    if isinstance(expires, datetime) and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    scopes = data.get("scopes") or ()
    if isinstance(scopes, str):
        scopes = scopes.replace(",", " ").split()
    return Credentials(
        access_token=data.get("access_token") or None,
        refresh_token=data.get("refresh_token") or None,
        expires_at=expires,
        scopes=tuple(str(s) for s in scopes),
    )


async def replace_credentials(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    connection_id: uuid.UUID,
    provider: str,
    credentials: Mapping[str, Any] | Credentials,
    http: httpx.AsyncClient | None = None,
    redis: Redis | None = None,
    catch_up: bool = True,
) -> Reconnected:
    """Give a connection new credentials, keeping its id, data and sync history.

    The provider's token validator checks them against the connection's own account (a token
    that reaches another account, or none, raises :class:`WrongAccount` and changes nothing);
    then they are stored encrypted, the connection returns to ``idle`` (a deleted one to
    ``active``) and, with ``catch_up``, a sync of the days it missed is queued: a backfill of
    the missing days only (coverage decides), or realtime when nothing before yesterday is
    missing. Commits ``session`` (no transaction stays open while the provider is called): pass a
    plain session (``get_sessionmaker()()``, the API's ``SessionDep``), not one inside ``begin()``.
    Raises :class:`ConnectionNotFound`, the provider's transient and rate-limit errors.
    """
    connection = await session.scalar(
        select(Connection).where(Connection.id == connection_id, Connection.workspace_id == workspace_id)
    )
    if connection is None:
        raise ConnectionNotFound("connection not found")
    if connection.provider != provider:
        raise WrongAccount(
            f"connection {connection_id} is a {connection.provider} connection, not {provider}; "
            f"connect {provider} accounts as new connections"
        )
    creds = credentials if isinstance(credentials, Credentials) else credentials_from(credentials)
    account, config = connection.external_account_id, dict(connection.config or {})
    await session.commit()
    validated = await _validate(provider, account, creds, config, http=http, redis=redis)
    connection = await session.get_one(Connection, connection_id, populate_existing=True)
    grant_id = credentials.get("grant_id") if isinstance(credentials, Mapping) else None
    await store_credentials(session, connection.id, validated.credentials, grant_id=grant_id)
    restore(connection)
    await session.commit()
    log.info("connection_reconnected", connection_id=str(connection.id), provider=provider)
    mode, result, missing = None, None, 0
    if catch_up and connection.status == ConnectionStatus.active:
        mode, missing = await catch_up_mode(session, connection)
        async with _redis(redis) as red:
            [result] = await enqueue_syncs(session, red, [connection], mode)
        await session.commit()
        await session.refresh(connection)
    return Reconnected(connection, mode if result else None, result, missing)


async def catch_up_mode(session: AsyncSession, connection: Connection) -> tuple[SyncMode, int]:
    """The sync that fetches what ``connection`` missed (and its missing day count): a backfill
    of the missing days when any day before yesterday is missing, else realtime."""
    provider = installed_provider(connection.provider)
    now = datetime.now(UTC)
    cov = await connection_coverage(session, connection, provider, now)
    yesterday = local_today(connection.timezone or "UTC", now) - timedelta(days=1)
    mode = gap_mode(cov, yesterday, realtime=provider.capabilities.realtime)
    return mode or SyncMode.realtime, len(cov.missing)


async def _validate(
    provider: str,
    account: str,
    creds: Credentials,
    config: dict[str, Any],
    *,
    http: httpx.AsyncClient | None,
    redis: Redis | None,
) -> Any:
    async with _http(http) as client, _redis(redis) as red:
        try:
            return await validate_account(provider, account, creds, config, http=client, redis=red)
        except (AuthError, ConfigError, PermanentError) as exc:
            raise WrongAccount(
                f"the new credentials do not reach {provider} account {account!r} ({exc.message}); "
                "log in as a user who can see that account, or connect the other account as a new "
                "connection"
            ) from None


class _http:
    """The caller's HTTP client, or one of our own for this call."""

    def __init__(self, given: httpx.AsyncClient | None) -> None:
        self.given, self.own = given, None if given else httpx.AsyncClient(timeout=30)

    async def __aenter__(self) -> httpx.AsyncClient:
        return self.given or self.own  # type: ignore[return-value]

    async def __aexit__(self, *exc: object) -> None:
        if self.own is not None:
            await self.own.aclose()


class _redis:
    """The caller's Redis client, or one from the settings for this call."""

    def __init__(self, given: Redis | None = None) -> None:
        self.given: Redis | None = given
        self.own: Redis | None = None

    async def __aenter__(self) -> Redis:
        if self.given is not None:
            return self.given
        from core.redis import create_arq_pool

        self.own = await create_arq_pool()
        return self.own

    async def __aexit__(self, *exc: object) -> None:
        if self.own is not None:
            await self.own.aclose()


__all__ = [
    "ConnectionNotFound",
    "Reconnected",
    "WrongAccount",
    "catch_up_mode",
    "credentials_from",
    "replace_credentials",
]
