"""The one builder of a :class:`~core.providers.ProviderContext`: HTTP, limiter and cache of one account."""

from __future__ import annotations

from collections.abc import Collection

import httpx
from redis.asyncio import Redis

from core.cache import ProviderCache
from core.config import Settings
from core.http import ProviderHTTP
from core.providers import AccountRef, Credentials, CredentialStore, Provider, ProviderContext
from core.ratelimit import AccountLimiter
from core.sync.throttle import sync_limiter


def provider_context(
    *,
    redis: Redis,
    client: httpx.AsyncClient,
    provider: Provider | str,
    account: AccountRef | str,
    settings: Settings | None = None,
    limiter: AccountLimiter | None = None,
    max_wait_s: float | None = None,
    credentials: Credentials | None = None,
    stored: Collection[str] = (),
    credential_store: CredentialStore | None = None,
) -> ProviderContext:
    """What the core lends ``provider`` for calls on ``account`` (a connection, or its external id).

    With ``credentials`` (a provider and an AccountRef) the limiter blocks at every throttle scope
    of the connection (:func:`core.sync.throttle.sync_limiter`); ``stored`` is the connection's
    ``throttle_scopes`` (empty for a connection not yet created: its account scope is not trusted).
    ``limiter`` replaces the default one (tests isolating their rate-limit keys); ``max_wait_s``
    bounds how long the limiter sleeps before raising RateLimited (short while validating a new
    connection); ``settings`` supplies the encryption keys of the cache (default: the process's);
    ``credential_store`` reads and writes the connection's stored credentials (syncs pass one).
    """
    name = provider if isinstance(provider, str) else provider.name
    external_id = account if isinstance(account, str) else account.external_account_id
    if limiter is None:
        if credentials is not None and not isinstance(provider, str) and not isinstance(account, str):
            limiter = sync_limiter(redis, provider, account, credentials, stored=stored, settings=settings)
        else:
            limiter = AccountLimiter(redis, name, external_id)
        if max_wait_s is not None:
            limiter.max_wait_s = max_wait_s
    return ProviderContext(
        http=ProviderHTTP(client, limiter),
        limiter=limiter,
        cache=ProviderCache(redis, name, settings=settings),
        credentials=credential_store,
    )
