"""OAuth access tokens for Google Ads: minted from the refresh token, cached in Redis, shared by all workers.

An access token lives an hour. Minting one per request (or per job) wastes a
round trip and, at scale, trips Google's token-endpoint limits, so tokens are
cached in Redis under a key namespaced by connection and by a hash of the
refresh token, encrypted with a key derived from the OAuth client secret and
the refresh token (a reader of Redis alone cannot use them). Entries expire
``token_refresh_margin_s`` before the token does. A Redis lock keeps
concurrent workers from minting the same token twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from typing import Any, NoReturn

import httpx
import structlog
from cryptography.fernet import Fernet, InvalidToken
from redis.asyncio import Redis

from core.errors import AuthError, ConfigError, RateLimited, TransientError
from metricx_google.settings import GoogleSettings

log = structlog.get_logger(__name__)

RECONNECT = "Please reconnect Google Ads."
_LOCK_TTL_MS = 15_000
_LOCK_WAIT_S = 10.0
_POLL_S = 0.05


def _digest(*parts: str) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.digest()


class TokenCache:
    """Encrypted access-token cache in Redis, one entry per (connection, refresh token).

    With ``redis=None`` the cache lives in this object only (tests, one-off scripts).
    """

    def __init__(self, redis: Redis | None, *, secret: str, prefix: str = "metricx:google:access") -> None:
        self._redis = redis
        self._secret = secret
        self._prefix = prefix
        self._memory: dict[str, tuple[bytes, float]] = {}

    def _key(self, connection_id: str, refresh_token: str) -> str:
        return f"{self._prefix}:{connection_id}:{_digest('key', refresh_token).hex()[:24]}"

    def _fernet(self, refresh_token: str) -> Fernet:
        key = _digest("metricx-google-token-cache", self._secret, refresh_token)
        return Fernet(base64.urlsafe_b64encode(key))

    async def get(self, connection_id: str, refresh_token: str) -> str | None:
        """The cached access token, or None when absent, expired or unreadable."""
        key = self._key(connection_id, refresh_token)
        blob: bytes | None
        if self._redis is None:
            entry = self._memory.get(key)
            blob = entry[0] if entry and entry[1] > time.monotonic() else None
        else:
            raw = await self._redis.get(key)
            blob = raw.encode() if isinstance(raw, str) else raw
        if not blob:
            return None
        try:
            return self._fernet(refresh_token).decrypt(blob).decode()
        except InvalidToken:
            return None

    async def put(self, connection_id: str, refresh_token: str, access_token: str, ttl_s: int) -> None:
        """Store ``access_token`` for ``ttl_s`` seconds (nothing when ``ttl_s`` <= 0)."""
        if ttl_s <= 0:
            return
        key = self._key(connection_id, refresh_token)
        blob = self._fernet(refresh_token).encrypt(access_token.encode())
        if self._redis is None:
            self._memory[key] = (blob, time.monotonic() + ttl_s)
        else:
            await self._redis.set(key, blob, ex=ttl_s)

    async def drop(self, connection_id: str, refresh_token: str, access_token: str | None = None) -> None:
        """Forget the cached token (only if it is ``access_token``, when given)."""
        if access_token is not None:
            current = await self.get(connection_id, refresh_token)
            if current is not None and current != access_token:
                return
        key = self._key(connection_id, refresh_token)
        if self._redis is None:
            self._memory.pop(key, None)
        else:
            await self._redis.delete(key)

    async def try_lock(self, connection_id: str, refresh_token: str) -> str | None:
        """Take the minting lock; returns its owner value, or None when another worker holds it."""
        if self._redis is None:
            return "local"
        owner = secrets.token_hex(8)
        key = self._key(connection_id, refresh_token) + ":lock"
        ok = await self._redis.set(key, owner, nx=True, px=_LOCK_TTL_MS)
        return owner if ok else None

    async def unlock(self, connection_id: str, refresh_token: str, owner: str) -> None:
        """Release the minting lock if we still own it."""
        if self._redis is None:
            return
        key = self._key(connection_id, refresh_token) + ":lock"
        current = await self._redis.get(key)
        if current is not None and (current.decode() if isinstance(current, bytes) else current) == owner:
            await self._redis.delete(key)


class AccessTokens:
    """Access tokens for one connection: cached, minted at most once per expiry, refreshed on demand."""

    def __init__(
        self,
        http: httpx.AsyncClient,
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

    async def _mint_shared(self, stale: str | None) -> str:
        owner = await self._cache.try_lock(self._connection_id, self._refresh_token)
        if owner is None:
            waited = await self._wait_for_other_worker(stale)
            if waited is not None:
                return waited
            log.warning("google_token_lock_timeout", connection_id=self._connection_id)
        try:
            return await self._mint()
        finally:
            if owner is not None:
                await self._cache.unlock(self._connection_id, self._refresh_token, owner)

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
            response = await self._http.post(settings.token_url, data=form, timeout=30.0)
        except httpx.TransportError as exc:
            raise TransientError(f"Google token endpoint unreachable ({type(exc).__name__})") from None
        payload = _json(response)
        if response.status_code == 200 and isinstance(payload.get("access_token"), str):
            return await self._store(payload)
        await self._raise_for_token_error(response.status_code, payload)

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

    async def _raise_for_token_error(self, status: int, payload: dict[str, Any]) -> NoReturn:
        error = str(payload.get("error") or "")
        description = str(payload.get("error_description") or "")[:200]
        log.warning("google_token_refused", connection_id=self._connection_id, status=status, error=error)
        if error == "invalid_grant":
            await self._cache.drop(self._connection_id, self._refresh_token)
            raise AuthError(
                f"Google refused the refresh token ({description or 'expired or revoked'}). {RECONNECT}"
            )
        if error in ("invalid_client", "unauthorized_client"):
            raise ConfigError(
                f"Google rejected the OAuth client ({error}): check METRICX_GOOGLE_CLIENT_ID and "
                "METRICX_GOOGLE_CLIENT_SECRET."
            )
        if status == 429:
            raise RateLimited("Google token endpoint throttled the request", 60.0)
        if status >= 500 or status == 0:
            raise TransientError(f"Google token endpoint failed with HTTP {status}")
        raise AuthError(f"Google token endpoint refused the refresh ({error or status}). {RECONNECT}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
