"""OAuth access tokens for Google Ads: minted from the refresh token, cached for every worker.

An access token lives an hour. Minting one per request (or per job) wastes a
round trip and, at scale, trips Google's token-endpoint limits, so tokens live
in the provider's cache (``ProviderContext.cache``: namespaced, encrypted with
the core's keys, expiring) under a key made of the connection and a hash of the
refresh token. Entries expire ``token_refresh_margin_s`` before the token does.
A cache lock keeps concurrent workers from minting the same token twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx
import structlog

from core import (
    AuthError,
    ConfigError,
    MetricxError,
    ProviderAPI,
    ProviderCache,
    ProviderHTTP,
    RateLimited,
    RetryPolicy,
    TransientError,
)
from metricx_google.settings import GoogleSettings

log = structlog.get_logger(__name__)

RECONNECT = "Please reconnect Google Ads."
_LOCK_TTL_S = 15.0
_LOCK_WAIT_S = 10.0
_POLL_S = 0.05


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


class TokenCache:
    """Access tokens in the provider cache, one encrypted entry per (connection, refresh token)."""

    def __init__(self, cache: ProviderCache) -> None:
        self._cache = cache

    @staticmethod
    def key(connection_id: str, refresh_token: str) -> str:
        """The cache key: a refresh token's hash, never the token itself."""
        return f"access:{connection_id}:{_digest('key', refresh_token)[:24]}"

    async def get(self, connection_id: str, refresh_token: str) -> str | None:
        """The cached access token, or None when absent, expired or unreadable."""
        return await self._cache.get(self.key(connection_id, refresh_token), encrypted=True)

    async def put(self, connection_id: str, refresh_token: str, access_token: str, ttl_s: int) -> None:
        """Store ``access_token`` for ``ttl_s`` seconds (nothing when ``ttl_s`` <= 0)."""
        if ttl_s > 0:
            key = self.key(connection_id, refresh_token)
            await self._cache.set(key, access_token, ttl_s=ttl_s, encrypted=True)

    async def drop(self, connection_id: str, refresh_token: str, access_token: str | None = None) -> None:
        """Forget the cached token (only if it is still ``access_token``, when given)."""
        key = self.key(connection_id, refresh_token)
        await self._cache.delete(key, if_value=access_token, encrypted=True)

    @property
    def cache(self) -> ProviderCache:
        return self._cache


class TokenEndpoint(ProviderAPI):
    """How ProviderHTTP reads Google's OAuth token endpoint."""

    name = "Google token endpoint"
    # A refused refresh is final and a failing endpoint is retried by the job, not here.
    policy = RetryPolicy(transient_retries=0, throttle_retries=0)

    def classify(self, response: httpx.Response) -> MetricxError | None:
        payload = _json(response)
        status = response.status_code
        if status == 200 and isinstance(payload.get("access_token"), str):
            return None
        error = str(payload.get("error") or "")
        description = str(payload.get("error_description") or "")[:200]
        log.warning("google_token_refused", status=status, error=error)
        if error == "invalid_grant":
            return AuthError(
                f"Google refused the refresh token ({description or 'expired or revoked'}). {RECONNECT}"
            )
        if error in ("invalid_client", "unauthorized_client"):
            return ConfigError(
                f"Google rejected the OAuth client ({error}): check METRICX_GOOGLE_CLIENT_ID and "
                "METRICX_GOOGLE_CLIENT_SECRET."
            )
        if status == 429:
            return RateLimited("Google token endpoint throttled the request", 60.0)
        if status >= 500 or status == 0:
            return TransientError(f"Google token endpoint failed with HTTP {status}")
        return AuthError(f"Google token endpoint refused the refresh ({error or status}). {RECONNECT}")


TOKEN_ENDPOINT = TokenEndpoint()


class AccessTokens:
    """Access tokens for one connection: cached, minted at most once per expiry, refreshed on demand."""

    def __init__(
        self,
        http: ProviderHTTP,
        settings: GoogleSettings,
        cache: TokenCache,
        *,
        connection_id: str,
        refresh_token: str,
    ) -> None:
        self._http = http
        self._settings = settings
        self._cache = cache
        self._connection_id = connection_id
        self._refresh_token = refresh_token

    async def get(self) -> str:
        """A valid access token: the shared cached one, else a freshly minted one."""
        cached = await self._cache.get(self._connection_id, self._refresh_token)
        return cached if cached is not None else await self._mint_shared(stale=None)

    async def refresh(self, stale: str) -> str:
        """A token other than ``stale`` (which the API rejected): another worker's, or a new one."""
        cached = await self._cache.get(self._connection_id, self._refresh_token)
        if cached is not None and cached != stale:
            return cached
        await self._cache.drop(self._connection_id, self._refresh_token, stale)
        return await self._mint_shared(stale=stale)

    async def renew(self) -> str:
        """Mint a new access token now (the token upkeep: Google revokes refresh tokens left unused)."""
        cached = await self._cache.get(self._connection_id, self._refresh_token)
        await self._cache.drop(self._connection_id, self._refresh_token, cached)
        return await self._mint_shared(stale=cached)

    async def _mint_shared(self, stale: str | None) -> str:
        lock_key = TokenCache.key(self._connection_id, self._refresh_token) + ":lock"
        lock = await self._cache.cache.try_lock(lock_key, ttl_s=_LOCK_TTL_S)
        if lock is None:
            waited = await self._wait_for_other_worker(stale)
            if waited is not None:
                return waited
            log.warning("google_token_lock_timeout", connection_id=self._connection_id)
        try:
            return await self._mint()
        finally:
            if lock is not None:
                await self._cache.cache.release(lock)

    async def _wait_for_other_worker(self, stale: str | None) -> str | None:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
            cached = await self._cache.get(self._connection_id, self._refresh_token)
            if cached is not None and cached != stale:
                return cached
        return None

    async def _mint(self) -> str:
        settings = self._settings
        if not settings.client_id or not settings.client_secret.get_secret_value():
            raise ConfigError(
                "Google OAuth client is not configured: set METRICX_GOOGLE_CLIENT_ID and "
                "METRICX_GOOGLE_CLIENT_SECRET."
            )
        form = {
            "grant_type": "refresh_token",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(),
            "refresh_token": self._refresh_token,
        }
        try:
            response = await self._http.post(TOKEN_ENDPOINT, settings.token_url, data=form, timeout_s=30.0)
        except AuthError:
            # The refresh token is dead: no worker may keep using a token minted from it.
            await self._cache.drop(self._connection_id, self._refresh_token)
            raise
        return await self._store(_json(response))

    async def _store(self, payload: dict[str, Any]) -> str:
        token = str(payload["access_token"])
        try:
            expires_in = int(payload.get("expires_in", 3599))
        except (TypeError, ValueError):
            expires_in = 3599
        margin = self._settings.token_refresh_margin_s
        # A token that lives less than the margin is still cached for half its life.
        ttl = expires_in - margin if expires_in > margin else expires_in // 2
        await self._cache.put(self._connection_id, self._refresh_token, token, ttl)
        log.info("google_token_minted", connection_id=self._connection_id, expires_in_s=expires_in)
        return token


class BearerAuth:
    """The ``RequestAuth`` of one Google Ads call: the shared token, refreshed once when rejected."""

    def __init__(self, tokens: AccessTokens) -> None:
        self._tokens = tokens
        self._token: str | None = None

    async def headers(self) -> dict[str, str]:
        if self._token is None:
            self._token = await self._tokens.get()
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self) -> None:
        stale = self._token if self._token is not None else ""
        self._token = await self._tokens.refresh(stale=stale)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
