"""Throttle scopes in syncs: a connection's limiter, its verified scope keys, and deferring every
connection that shares a blocked scope (in the worker and at fan-out time).

A connection's scope keys (:func:`scope_keys`) are stored on
``connections.throttle_scopes`` once a sync has verified them (the provider read
the account with this credential), so a block at one scope finds every
connection sharing it with one indexed query.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import structlog
from redis.asyncio import Redis

from core.config import Settings
from core.crypto import keyed_digest
from core.db.engine import session_scope
from core.db.models import Connection
from core.errors import SCOPE_ACCOUNT, SCOPE_TOKEN, THROTTLE_SCOPES, RateLimited
from core.providers import AccountRef, Credentials, Provider
from core.ratelimit import SCOPE_CONNECTION, AccountLimiter, ScopeKeys, block_key, blocked_until
from core.sync import status

log = structlog.get_logger(__name__)

# The fan-out leaves shorter blocks to the worker's limiter (its default max_wait_s sleeps them out).
MIN_SKIP_BLOCK_S = 30.0


@runtime_checkable
class DeclaresThrottleScopes(Protocol):
    """A provider that names the scopes its throttles cover (optional; see core/HOOKS.md)."""

    def throttle_scopes(self, account: AccountRef, credentials: Credentials) -> Mapping[str, str]:
        """Scope name -> the identity that scope stands for (an app id, a developer token, ...).

        Values come from the provider's settings or the credential, never from the
        connection's config; the core stores only keyed digests of them.
        """
        ...


def _scope_values(provider: Provider, account: AccountRef, credentials: Credentials) -> dict[str, str]:
    values = {
        SCOPE_ACCOUNT: account.external_account_id.strip(),
        # The refresh token is the credential's lasting identity; access tokens rotate.
        SCOPE_TOKEN: credentials.refresh_token or credentials.access_token or "",
    }
    if isinstance(provider, DeclaresThrottleScopes):
        declared = provider.throttle_scopes(account, credentials)
        values.update({k: str(v) for k, v in declared.items() if k in THROTTLE_SCOPES})
    return {k: v for k, v in values.items() if v}


def scope_keys(
    provider: Provider,
    account: AccountRef,
    credentials: Credentials,
    *,
    trusted: Collection[str] = (),
    settings: Settings | None = None,
) -> ScopeKeys:
    """The scope keys of a connection; its account is trusted when ``trusted`` (the keys a
    verified sync stored on the connection) holds both this account's and this credential's key."""
    keys = {
        scope: f"{provider.name}:{scope}:"
        + keyed_digest(value, purpose=f"throttle:{provider.name}:{scope}", settings=settings)
        for scope, value in _scope_values(provider, account, credentials).items()
    }
    keys[SCOPE_CONNECTION] = f"connection:{account.connection_id or uuid.uuid4().hex}"
    verified = all(scope in keys and keys[scope] in trusted for scope in (SCOPE_ACCOUNT, SCOPE_TOKEN))
    return ScopeKeys(keys, account_verified=verified)


def sync_limiter(
    redis: Redis,
    provider: Provider,
    account: AccountRef,
    credentials: Credentials,
    *,
    stored: Collection[str] = (),
    max_wait_s: float = 30.0,
    settings: Settings | None = None,
) -> AccountLimiter:
    """The limiter of one connection's sync (or of a new connection's validation: ``stored`` empty).

    ``stored`` is ``connections.throttle_scopes``: the account scope is trusted
    only when an earlier sync verified it with this same credential.
    """
    scopes = scope_keys(provider, account, credentials, trusted=stored, settings=settings)
    return AccountLimiter(
        redis, provider.name, account.external_account_id, scopes=scopes, max_wait_s=max_wait_s
    )


async def record_verified(limiter: AccountLimiter, connection: Connection) -> None:
    """The provider read the account with this credential: trust its account scope and store the
    connection's shared scope keys (written only when they changed)."""
    limiter.trust_account()
    keys = limiter.scopes.shared()
    if sorted(connection.throttle_scopes or ()) == keys:
        return
    async with session_scope() as session:
        await status.store_throttle_scopes(session, connection.id, keys)
    connection.throttle_scopes = keys


def _message(scope: str, until: datetime) -> str:
    return (
        f"rate limited: the platform throttled the {scope} this connection shares with others; "
        f"syncs resume after {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    )


async def defer_sharing(
    redis: Redis, scopes: ScopeKeys, exc: RateLimited, *, until: datetime, connection_id: uuid.UUID
) -> list[uuid.UUID]:
    """Block the throttle's scope for every worker and mark every other connection sharing it
    ``rate_limited`` until ``until``; returns their ids. An untrusted or undeclared scope falls back
    to the credential (or this connection alone), as :meth:`ScopeKeys.resolve` says."""
    scope, key = scopes.resolve(exc.scope)
    await block_key(redis, key, exc.retry_after_s)
    if scope == SCOPE_CONNECTION:
        return []
    async with session_scope() as session:
        others = await status.mark_scope_rate_limited(
            session, key, until=until, message=_message(scope, until), exclude=connection_id
        )
    log.warning("scope_rate_limited", scope=scope, requested_scope=exc.scope, deferred=len(others))
    return others


async def skip_blocked(
    redis: Redis, rows: Sequence[Any], *, min_block_s: float = MIN_SKIP_BLOCK_S
) -> tuple[list[Any], int]:
    """Fan-out: the ``rows`` (with ``throttle_scopes``) none of whose scopes is blocked, and how many
    were left out; every connection sharing a blocked scope gets ``rate_limited_until`` (one MGET).

    A block ending within ``min_block_s`` is left to the worker's limiter, which waits it out.
    """
    ends = await blocked_until(redis, {key for row in rows for key in row.throttle_scopes or ()})
    horizon = time.time() + min_block_s
    blocked = {key: end for key, end in ends.items() if end > horizon}
    if not blocked:
        return list(rows), 0
    due = [row for row in rows if not blocked.keys() & set(row.throttle_scopes or ())]
    async with session_scope() as session:
        for key, end in blocked.items():
            until = datetime.fromtimestamp(end, UTC)
            scope = key.split(":")[1] if key.count(":") >= 2 else "scope"
            await status.mark_scope_rate_limited(session, key, until=until, message=_message(scope, until))
    return due, len(rows) - len(due)
