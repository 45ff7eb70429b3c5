"""Token upkeep: refresh credentials before they expire, use refresh tokens a platform revokes when
idle, and show credentials that cannot be refreshed as ``expires_soon`` days before they lapse.

``scheduled_token_upkeep`` runs on its own cron (``cron_token_upkeep``) and goes over every
connection that is not deleted and not waiting for a reconnect, paused ones included (a paused
connection must still work when resumed). A provider says when its credentials need a refresh and
how to do it through the optional :class:`~core.providers.RefreshesCredentials` methods; the
core only decides who is due, builds the same :class:`~core.providers.ProviderContext` a sync
does (its credential store, so a rotating refresh token is stored under the provider's lock) and
records the outcome. A refresh the platform refuses marks the connection ``reconnect_required``
at once, instead of at its next sync. Each pass also erases the tokens of connect flows that
lapsed without a pick (and forgets flows older than a week), as a new flow does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict

import structlog
from redis.asyncio import Redis
from sqlalchemy import Row, select, update

import core.keys as keys
from core.config import Settings, get_settings
from core.crypto import decrypt
from core.db.engine import session_scope
from core.db.models import Connection, Credential
from core.errors import AuthError, MetricxError
from core.plugins import Registry
from core.providers import Credentials, RefreshesCredentials
from core.services.connect import prune_connect_sessions
from core.state import BUSY, ConnectionStatus, SyncStatus
from core.sync import status
from core.sync.loading import Loaded, account_ref, provider_context, store_credentials

log = structlog.get_logger(__name__, component="UPKEEP")

UPKEEP_JOB = "scheduled_token_upkeep"
# How long the last upkeep refresh of a connection is remembered (longer than any provider's interval).
_LAST_TTL_S = 30 * 86400

CredentialState = Literal["ok", "expires_soon", "expired", "missing"]


def credential_state(
    *, present: bool, expires_at: datetime | None, refreshable: bool, now: datetime, soon_days: int
) -> CredentialState:
    """How a connection's credentials stand: ``expires_soon`` when they cannot be refreshed (no
    refresh token: Meta's long-lived tokens) and expire within ``soon_days``; ``expired`` once past."""
    if not present:
        return "missing"
    if refreshable or expires_at is None:
        return "ok"
    if expires_at <= now:
        return "expired"
    return "expires_soon" if expires_at <= now + timedelta(days=soon_days) else "ok"


async def credential_states(
    connection_ids: Sequence[uuid.UUID], now: datetime | None = None
) -> dict[uuid.UUID, tuple[CredentialState, datetime | None]]:
    """{connection id: (state, expires_at)} for the API and ``metricx status`` (one query)."""
    now = now or datetime.now(UTC)
    soon = get_settings().credentials_expire_soon_days
    async with session_scope() as session:
        rows = await session.execute(
            select(
                Credential.connection_id,
                Credential.expires_at,
                Credential.refresh_token_enc.is_not(None),
                Credential.access_token_enc.is_not(None),
            ).where(Credential.connection_id.in_(list(connection_ids)))
        )
        found = {r[0]: r for r in rows}
    out: dict[uuid.UUID, tuple[CredentialState, datetime | None]] = {}
    for cid in connection_ids:
        row = found.get(cid)
        if row is None:
            out[cid] = ("missing", None)
            continue
        _, expires_at, has_refresh, has_access = row
        state = credential_state(
            present=bool(has_refresh or has_access),
            expires_at=expires_at,
            refreshable=bool(has_refresh),
            now=now,
            soon_days=soon,
        )
        out[cid] = (state, expires_at)
    return out


def _clock(tick: str | None) -> datetime:
    now = datetime.now(UTC)
    if tick:
        try:
            fired = datetime.fromisoformat(tick)
        except ValueError:
            return now
        if fired.tzinfo is not None and fired > now:
            return fired
    return now


class UpkeepStats(TypedDict):
    """What one pass did."""

    checked: int
    refreshed: int
    failed: int
    reconnect_required: int
    expires_soon: int


async def _rows() -> Sequence[Row[Connection, Credential]]:
    query = (
        select(Connection, Credential)
        .join(Credential, Credential.connection_id == Connection.id)
        .where(
            Connection.status != ConnectionStatus.disconnected,
            Connection.sync_status != SyncStatus.reconnect_required,
        )
        .order_by(Connection.id)
    )
    async with session_scope() as session:
        return (await session.execute(query)).all()


def _last_key(connection_id: uuid.UUID) -> str:
    return f"{keys.TOKEN_UPKEEP_PREFIX}{connection_id}"


async def _last_refreshes(redis: Redis, connection_ids: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """When the upkeep last refreshed each connection (absent: never, or too long ago)."""
    found: dict[uuid.UUID, datetime] = {}
    for at in range(0, len(connection_ids), 1000):
        chunk = connection_ids[at : at + 1000]
        for cid, raw in zip(chunk, await redis.mget([_last_key(c) for c in chunk]), strict=True):
            if raw:
                found[cid] = datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else str(raw))
    return found


async def _refused(connection: Connection, exc: AuthError) -> None:
    """The platform refused the refresh: the connection needs a reconnect (a running sync finds out
    itself)."""
    async with session_scope() as session:
        await session.execute(
            update(Connection)
            .where(Connection.id == connection.id, Connection.sync_status.not_in(list(BUSY)))
            .values(
                sync_status=SyncStatus.reconnect_required,
                last_sync_error=status.clip(exc.message),
                last_error_kind=exc.kind,
            )
        )


async def refresh_one(
    ctx: dict[str, Any], connection: Connection, credentials: Credentials, provider: RefreshesCredentials
) -> None:
    """Refresh one connection's credentials through its provider, storing what it returns."""
    loaded = Loaded(connection, credentials, provider)  # type: ignore[arg-type]
    pctx = provider_context(ctx, loaded)
    fresh = await provider.refresh_credentials(pctx, account_ref(connection), credentials)
    if fresh is not None:
        await store_credentials(connection.id, fresh)


async def token_upkeep(
    ctx: dict[str, Any], tick: str | None = None, *, now: datetime | None = None
) -> UpkeepStats:
    """One pass: refresh every connection whose provider says its credentials are due.

    ``now`` is the clock the decisions use (default: now; a ``tick`` ahead of the clock, as a test
    advancing simulated time enqueues, counts as now)."""
    settings: Settings = ctx.get("settings") or get_settings()
    registry: Registry = ctx["registry"]
    redis: Redis = ctx["redis"]
    now = now or _clock(tick)
    soon = timedelta(days=settings.credentials_expire_soon_days)
    stats: UpkeepStats = {
        "checked": 0,
        "refreshed": 0,
        "failed": 0,
        "reconnect_required": 0,
        "expires_soon": 0,
    }
    async with session_scope() as session:  # connect flows nobody finished: their tokens go
        await prune_connect_sessions(session)
    rows = await _rows()
    lasts = await _last_refreshes(redis, [connection.id for connection, _ in rows])
    horizon = now + timedelta(seconds=settings.token_upkeep_margin_s)
    due: list[tuple[Connection, Credentials, RefreshesCredentials]] = []
    for connection, cred in rows:
        stats["checked"] += 1
        provider = registry.providers.get(connection.provider)
        creds = Credentials(
            access_token=decrypt(cred.access_token_enc),
            refresh_token=decrypt(cred.refresh_token_enc),
            expires_at=cred.expires_at,
            scopes=tuple((cred.scopes or "").split()),
        )
        if not creds.refresh_token and creds.expires_at is not None and now < creds.expires_at <= now + soon:
            stats["expires_soon"] += 1
            log.warning(
                "credentials_expire_soon",
                connection_id=str(connection.id),
                provider=connection.provider,
                expires_at=creds.expires_at.isoformat(),
            )
        if not isinstance(provider, RefreshesCredentials):
            continue
        if provider.refresh_due(creds, last_refresh=lasts.get(connection.id), now=now, horizon=horizon):
            due.append((connection, creds, provider))

    # Refreshes are HTTP calls to the platforms: a bounded number run at once, so a fleet of
    # expiring tokens is refreshed within one period instead of one connection after another.
    gate = asyncio.Semaphore(settings.token_upkeep_concurrency)

    async def refresh(connection: Connection, creds: Credentials, provider: RefreshesCredentials) -> None:
        async with gate:
            try:
                await refresh_one(ctx, connection, creds, provider)
            except AuthError as exc:
                stats["reconnect_required"] += 1
                log.warning(
                    "credentials_refresh_refused", connection_id=str(connection.id), error=exc.message
                )
                await _refused(connection, exc)
                return
            except MetricxError as exc:  # transient, throttled: the next pass tries again
                stats["failed"] += 1
                log.warning(
                    "credentials_refresh_failed", connection_id=str(connection.id), error_kind=exc.kind
                )
                return
            except Exception as exc:  # a provider's bug must not stop the other connections' upkeep
                stats["failed"] += 1
                log.error(
                    "credentials_refresh_crashed",
                    connection_id=str(connection.id),
                    error_type=type(exc).__name__,
                )
                return
            await redis.set(_last_key(connection.id), now.isoformat(), ex=_LAST_TTL_S)
            stats["refreshed"] += 1

    await asyncio.gather(*(refresh(*item) for item in due))
    log.info("token_upkeep_finished", **stats)
    return stats


__all__ = [
    "UPKEEP_JOB",
    "CredentialState",
    "UpkeepStats",
    "credential_state",
    "credential_states",
    "refresh_one",
    "token_upkeep",
]
