"""ProviderCache: a provider's own corner of Redis (``ProviderContext.cache``), so no plugin touches Redis.

Keys are namespaced per provider (``metricx:cache:{provider}:{key}``): two providers using the
same key never see each other's values. Values are text; ``encrypted=True`` stores them with the
core's Fernet keys (``METRICX_ENCRYPTION_KEYS``), so a reader of Redis alone cannot use them.
Every value expires. Locks are owned by a random token and released by compare-and-delete (WATCH / MULTI): a
worker whose lock expired and was taken by another never deletes the other's lock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from cryptography.fernet import InvalidToken, MultiFernet
from redis.asyncio import Redis
from redis.exceptions import WatchError

from core.config import Settings
from core.crypto import get_cipher
from core.keys import CACHE_PREFIX

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CacheLock:
    """A held lock: ``token`` proves ownership; :meth:`ProviderCache.release` frees it."""

    key: str
    token: str


class ProviderCache:
    """Values one provider shares between its calls and workers: get / set / delete, expiry, locks."""

    def __init__(
        self,
        redis: Redis,
        provider: str,
        *,
        settings: Settings | None = None,
        cipher: MultiFernet | None = None,
        prefix: str = CACHE_PREFIX,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._cipher = cipher
        self.namespace = f"{prefix}:{provider}:"

    def _key(self, key: str) -> str:
        if not key:
            raise ValueError("a cache key must not be empty")
        return self.namespace + key

    def _fernet(self) -> MultiFernet:
        # Resolved on first use: a provider that never encrypts needs no keys.
        if self._cipher is None:
            self._cipher = get_cipher(self._settings)
        return self._cipher

    async def get(self, key: str, *, encrypted: bool = False) -> str | None:
        """The value of ``key``, or None when absent, expired or (encrypted) unreadable with our keys."""
        return self._decode(key, await self._redis.get(self._key(key)), encrypted)

    def _decode(self, key: str, raw: bytes | str | None, encrypted: bool) -> str | None:
        if raw is None:
            return None
        blob = raw.encode() if isinstance(raw, str) else bytes(raw)
        if not encrypted:
            return blob.decode()
        try:
            return self._fernet().decrypt(blob).decode()
        except InvalidToken:
            log.warning("provider_cache_unreadable", key=self._key(key))
            return None

    async def set(
        self, key: str, value: str, *, ttl_s: float, encrypted: bool = False, only_if_absent: bool = False
    ) -> bool:
        """Store ``value`` for ``ttl_s`` seconds (> 0); False when ``only_if_absent`` and ``key`` exists."""
        if ttl_s <= 0:
            raise ValueError("a cached value must expire: ttl_s must be > 0")
        blob = self._fernet().encrypt(value.encode()) if encrypted else value.encode()
        done = await self._redis.set(self._key(key), blob, px=max(1, int(ttl_s * 1000)), nx=only_if_absent)
        return bool(done)

    async def delete(self, key: str, *, if_value: str | None = None, encrypted: bool = False) -> bool:
        """Forget ``key``; with ``if_value``, only while it still holds that value. True when deleted."""
        if if_value is None:
            return bool(await self._redis.delete(self._key(key)))
        return await self._compare_and_delete(key, lambda raw: self._decode(key, raw, encrypted) == if_value)

    async def _compare_and_delete(self, key: str, matches: Callable[[bytes], bool]) -> bool:
        # WATCH makes the delete fail if the value changed after we read it: atomic, without Lua.
        full = self._key(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(full)
            raw = await pipe.get(full)
            if raw is None or not matches(raw):
                await pipe.unwatch()  # type: ignore[no-untyped-call]
                return False
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.delete(full)
            try:
                deleted = await pipe.execute()
            except WatchError:
                return False
        return bool(deleted[0])

    async def incr(self, key: str, by: int = 1, *, ttl_s: float) -> int:
        """Add ``by`` to the counter ``key`` (created at 0) and return the new value, atomically for
        every worker; the counter expires ``ttl_s`` after it was created (e.g. a daily quota's reset)."""
        if ttl_s <= 0:
            raise ValueError("a cached value must expire: ttl_s must be > 0")
        # Created at 0 with its expiry, then incremented, in one MULTI: no PEXPIRE ... NX (Redis 7
        # only; the embedded Redis is 6.2) and no script (fakeredis runs none without lupa).
        full = self._key(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(full, 0, px=max(1, int(ttl_s * 1000)), nx=True)
            pipe.incrby(full, by)
            _, value = await pipe.execute()
        return int(value)

    async def get_many(self, keys: list[str]) -> list[str | None]:
        """The plain (unencrypted) values of ``keys``, in order, in one round trip."""
        if not keys:
            return []
        raw = await self._redis.mget([self._key(k) for k in keys])
        return [self._decode(k, v, False) for k, v in zip(keys, raw, strict=True)]

    async def try_lock(self, key: str, *, ttl_s: float) -> CacheLock | None:
        """Take the lock ``key`` for at most ``ttl_s`` seconds; None when another holder has it."""
        token = secrets.token_hex(16)
        if await self.set(key, token, ttl_s=ttl_s, only_if_absent=True):
            return CacheLock(key, token)
        return None

    async def release(self, lock: CacheLock) -> bool:
        """Free ``lock`` if it is still ours (compare-and-delete); False when it expired or changed hands."""
        return await self._compare_and_delete(
            lock.key, lambda raw: self._decode(lock.key, raw, False) == lock.token
        )

    async def ttl_s(self, key: str) -> float | None:
        """Seconds until ``key`` expires; None when it does not exist."""
        ms = await self._redis.pttl(self._key(key))
        return ms / 1000 if ms >= 0 else None
