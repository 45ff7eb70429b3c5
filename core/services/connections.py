"""Operations the API and the CLI share: connect an account (validated by its provider), enqueue syncs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import structlog
from redis.asyncio import Redis
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.context import provider_context
from core.db.models import Connection, Credential
from core.enqueue import EnqueueResult
from core.errors import ConfigError, MetricxError, PermanentError
from core.logging import redact_text
from core.plugins import get_registry
from core.providers import AccountInfo, AccountRef, Credentials, Provider, SyncMode
from core.services.accounts import (
    create_connection,
    delete_snapshots,
    restore,
    store_credentials,
    stored_account_id,
)
from core.state import ConnectionStatus, SyncJobId
from core.sync.requests import request_syncs

log = structlog.get_logger(__name__)

# A new connection's validation must not hold an HTTP request for a long quota.
VALIDATION_MAX_WAIT_S = 5.0


class ProviderNotInstalled(ConfigError):
    """The requested provider has no installed plugin."""


class ConnectionExists(ConfigError):
    """The workspace already has a connection to this provider account."""


@dataclass(frozen=True, slots=True)
class ValidatedAccount:
    provider: Provider
    credentials: Credentials
    info: AccountInfo


def installed_provider(name: str) -> Provider:
    """The provider called ``name``, or :class:`ProviderNotInstalled` naming what is installed."""
    registry = get_registry()
    if name not in registry.providers:
        installed = ", ".join(sorted(registry.providers)) or "none"
        raise ProviderNotInstalled(f"provider {name!r} is not installed (installed: {installed})")
    return registry.providers[name]


async def validate_account(
    provider_name: str,
    external_account_id: str,
    credentials: Credentials,
    config: dict[str, Any],
    *,
    http: httpx.AsyncClient,
    redis: Redis,
) -> ValidatedAccount:
    """Check the tokens offline, then against the platform, and read the account's timezone/currency.

    Raises the provider's errors (:class:`~core.errors.AuthError` for bad tokens).
    """
    provider = installed_provider(provider_name)
    try:
        return await _validate(provider, external_account_id, credentials, config, http=http, redis=redis)
    except MetricxError:
        raise
    except Exception as exc:  # a provider bug or bad config (e.g. a malformed base_url): the caller's 422
        log.warning("connection_validation_crashed", provider=provider.name, error_type=type(exc).__name__)
        raise PermanentError(
            f"the {provider.name} provider could not validate this account "
            f"({type(exc).__name__}: {redact_text(str(exc))[:200]}); check the connection's config"
        ) from exc


async def _validate(
    provider: Provider,
    external_account_id: str,
    credentials: Credentials,
    config: dict[str, Any],
    *,
    http: httpx.AsyncClient,
    redis: Redis,
) -> ValidatedAccount:
    provider.check_credentials(credentials)
    account = AccountRef(
        connection_id="", workspace_id="", external_account_id=external_account_id, config=dict(config)
    )
    # Nothing stored: the account id comes from the request body and is not verified yet, so a
    # throttle met here blocks this credential (token scope), never that account (issue 19).
    ctx = provider_context(
        redis=redis,
        client=http,
        provider=provider,
        account=account,
        credentials=credentials,
        max_wait_s=VALIDATION_MAX_WAIT_S,
    )
    refreshed = await provider.validate_token(ctx, account, credentials)
    if refreshed is not None:
        credentials = refreshed
    info = await provider.fetch_account(ctx, account, credentials)
    return ValidatedAccount(provider, credentials, info)


async def add_connection(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    external_account_id: str,
    validated: ValidatedAccount,
    *,
    name: str | None,
    config: dict[str, Any],
    grant_id: uuid.UUID | None = None,
) -> Connection:
    """Store a validated connection (tokens encrypted); :class:`ConnectionExists` on a duplicate
    (also under another spelling of the account id, e.g. Meta ``act_1001`` and ``1001``).

    A deleted connection of the same account whose data was kept is connected again instead: same
    id, its history and sync runs back, the new credentials stored (see :attr:`Connection.status`
    ``disconnected``).
    """
    external_account_id = stored_account_id(validated.provider.name, external_account_id)
    duplicate = await session.scalar(
        select(Connection).where(
            Connection.workspace_id == workspace_id,
            Connection.provider == validated.provider.name,
            Connection.external_account_id == external_account_id,
        )
    )
    await check_timezone(session, validated.provider.name, validated.info.timezone)
    if duplicate is not None and duplicate.status == ConnectionStatus.disconnected:
        return await _readd(session, duplicate, validated, name=name, config=config, grant_id=grant_id)
    if duplicate is not None:
        raise _exists(validated.provider.name, external_account_id)
    try:
        connection = await create_connection(
            session,
            workspace_id,
            validated.provider.name,
            external_account_id,
            validated.credentials,
            name=name or validated.info.name,
            timezone=validated.info.timezone,
            currency=validated.info.currency,
            config=config,
            grant_id=grant_id,
        )
    except IntegrityError:
        raise _exists(validated.provider.name, external_account_id) from None
    log.info("connection_created", connection_id=str(connection.id), provider=validated.provider.name)
    return connection


async def check_timezone(session: AsyncSession, provider: str, zone: str) -> None:
    """The account's zone must be one both Python (zoneinfo) and PostgreSQL know: day boundaries and
    nightly compaction compute with it. :class:`ConfigError` (a 422) naming it otherwise."""
    try:
        known = bool(zone) and ZoneInfo(zone) is not None
    except (ZoneInfoNotFoundError, ValueError):
        known = False
    if known:
        known = bool(
            await session.scalar(text("SELECT count(*) FROM pg_timezone_names WHERE name = :z"), {"z": zone})
        )
    if not known:
        raise ConfigError(
            f"the {provider} account reports the timezone {zone[:64]!r}, which is not an IANA zone "
            "known to this server; fix the account's timezone on the platform, then connect again"
        )


def _exists(provider: str, account: str) -> ConnectionExists:
    return ConnectionExists(
        f"this workspace already has a {provider} connection for account {account!r}; to give it new "
        "credentials, reconnect it (PUT .../connections/{id}/credentials or `metricx connections reconnect`)"
    )


async def _readd(
    session: AsyncSession,
    connection: Connection,
    validated: ValidatedAccount,
    *,
    name: str | None,
    config: dict[str, Any],
    grant_id: uuid.UUID | None,
) -> Connection:
    await store_credentials(session, connection.id, validated.credentials, grant_id=grant_id)
    restore(connection)
    connection.name = name or connection.name or validated.info.name
    connection.timezone, connection.currency = validated.info.timezone, validated.info.currency
    connection.config = config
    await session.flush()
    log.info("connection_readded", connection_id=str(connection.id), provider=validated.provider.name)
    return connection


class SyncTarget(Protocol):
    """What queuing a sync needs of a connection (an ORM ``Connection`` or a lean row)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def workspace_id(self) -> uuid.UUID: ...


async def enqueue_syncs(
    session: AsyncSession, redis: Redis, connections: Sequence[SyncTarget], mode: SyncMode
) -> list[EnqueueResult]:
    """Claim each connection (``queued``), then enqueue its sync, or return the sync it already has.

    The connections must be committed. The claims are written in their own
    committed transaction before the jobs exist (``session`` is not used for
    them: a worker may start a job at once and must see its claim).
    """
    return await request_syncs(redis, [(c.id, c.workspace_id) for c in connections], mode)


def job_mode(job_id: str | None, requested: SyncMode) -> SyncMode:
    """The mode of a sync job id (an ``already_queued`` answer may name another mode's job)."""
    parsed = SyncJobId.parse(job_id)
    try:
        return SyncMode(parsed.mode) if parsed else requested
    except ValueError:
        return requested


class ConnectionDeleted(ConfigError):
    """The connection was deleted (its data kept): it cannot be paused, resumed or synced."""


async def set_connection_status(
    session: AsyncSession, connection: Connection, value: ConnectionStatus
) -> None:
    """Pause (no scheduled, manual or pushed syncs) or resume a connection; a deleted one refuses."""
    if connection.status == ConnectionStatus.disconnected:
        raise ConnectionDeleted(
            "the connection was deleted; connect the account again (its data comes back with it)"
        )
    connection.status = value
    await session.flush()
    log.info("connection_status_changed", connection_id=str(connection.id), status=value.value)


async def delete_connection(session: AsyncSession, connection: Connection, *, keep_data: bool) -> None:
    """Disconnect: tokens erased and no more syncs; the synced data kept (the account can be connected
    again and gets it back) or removed with the connection."""
    if keep_data:
        await session.execute(delete(Credential).where(Credential.connection_id == connection.id))
        connection.status = ConnectionStatus.disconnected
        await session.flush()
    else:
        # The connection first: its row lock waits for a snapshot write still holding it (the
        # upsert's key-share lock), so the delete below also sees that write's rows.
        await session.execute(delete(Connection).where(Connection.id == connection.id))
        await delete_snapshots(session, [connection.id])
    log.info("connection_deleted", connection_id=str(connection.id), data="keep" if keep_data else "delete")
