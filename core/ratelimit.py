"""A Redis-backed rate limiter shared by every worker, keyed by (provider, scope).

Providers call :meth:`AccountLimiter.acquire` before each request and report
what the platform tells them (usage percentages, throttle errors) so that all
workers slow down together, before the platform throttles.

A throttle covers a *scope* (:data:`core.errors.THROTTLE_SCOPES`): one account,
every account of one credential (``token``), of one OAuth app (``app``) or of one
developer token (``developer``). :func:`core.sync.throttle.scope_keys` names each scope
of a connection from what the provider verified, never from tenant input alone:

- ``token``: a keyed digest of the credential (never the token itself);
- ``app`` / ``developer``: what the provider declares from its operator settings;
- ``account``: blocks at this scope are trusted only once the provider has shown
  the credential reaches the account (:meth:`AccountLimiter.trust_account`); until
  then they fall back to ``token``, so a tenant cannot block another tenant's
  account by connecting to its id with a throttled token of its own.

:meth:`AccountLimiter.acquire` honours every scope of the connection in one round
trip: one ``MGET``, or with a steady rate one Lua call that also takes the rate's slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from core.errors import SCOPE_ACCOUNT, SCOPE_TOKEN, THROTTLE_SCOPES, RateLimited
from core.keys import RATE_LIMIT_PREFIX

log = structlog.get_logger(__name__)

# Everything acquire() needs with a steady rate, in one round trip: the latest active block among
# the scope keys (KEYS[1..n]); else the usage (KEYS[n+1]) when it calls for a slowdown not yet
# waited; else a GCRA slot (KEYS[n+2]): one request every `interval` seconds with a burst of
# `burst` requests. Returns {block index or 0, block end, usage, seconds to wait for the rate}.
_PACED = """
local n = #KEYS - 2
local now = tonumber(ARGV[1])
local best, index = 0, 0
for i = 1, n do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  if v > now and v > best then best, index = v, i end
end
if index > 0 then return {tostring(index), tostring(best), '', '0'} end
local usage = redis.call('GET', KEYS[n + 1])
if usage and ARGV[4] == '0' and tonumber(usage) >= tonumber(ARGV[5]) then
  return {'0', '0', usage, '0'}
end
local gcra = KEYS[n + 2]
local tat = tonumber(redis.call('GET', gcra) or ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
if tat < now then tat = now end
local allow_at = tat - (burst - 1) * interval
if allow_at > now then return {'0', '0', '', tostring(allow_at - now)} end
redis.call('SET', gcra, tostring(tat + interval), 'PX', math.ceil((tat + interval - now) * 1000) + 1000)
return {'0', '0', '', '0'}
"""
_PACED_SHA = hashlib.sha1(_PACED.encode(), usedforsecurity=False).hexdigest()  # Redis names scripts by SHA-1

PREFIX = RATE_LIMIT_PREFIX
# The last resort of a block nobody else may share: this connection only.
SCOPE_CONNECTION = "connection"


@dataclass(frozen=True, slots=True)
class ScopeKeys:
    """The limiter key of each scope of one connection, and whether its account scope is trusted."""

    keys: Mapping[str, str]
    account_verified: bool = False

    def resolve(self, scope: str) -> tuple[str, str]:
        """(scope, key) a block at ``scope`` lands on.

        An unknown scope means ``account``; an untrusted account or a scope the
        provider did not declare falls back to ``token``, then to this connection
        (a block already narrowed to this connection stays there).
        """
        if scope not in (*THROTTLE_SCOPES, SCOPE_CONNECTION):
            scope = SCOPE_ACCOUNT
        if scope == SCOPE_ACCOUNT and not self.account_verified:
            scope = SCOPE_TOKEN
        for candidate in (scope, SCOPE_TOKEN, SCOPE_CONNECTION, SCOPE_ACCOUNT):
            if candidate in self.keys:
                return candidate, self.keys[candidate]
        raise ValueError("a connection's scope keys need at least a connection key")

    def verified(self) -> ScopeKeys:
        """These keys with the account scope trusted (the credential reached the account)."""
        return replace(self, account_verified=True)

    def shared(self) -> list[str]:
        """The keys other connections can share (stored on the connection for fan-out and SQL)."""
        return sorted(
            key
            for scope, key in self.keys.items()
            if scope != SCOPE_CONNECTION and (scope != SCOPE_ACCOUNT or self.account_verified)
        )


def blocked_key(key: str, prefix: str = PREFIX) -> str:
    """The Redis key holding until when (epoch seconds) scope key ``key`` is blocked."""
    return f"{prefix}:{key}:blocked"


SLOWDOWN_FROM_PCT = 70.0
STOP_AT_PCT = 95.0


class AccountLimiter:
    """Pacing for one connection across all its scopes; cheap to create per sync.

    ``max_wait_s``: a wait longer than this raises :class:`RateLimited` instead
    of sleeping, so a worker slot is not held for a long quota. Without
    ``scopes`` the limiter has one trusted account key ``provider:account``
    (tests and tools); syncs build theirs with :func:`scope_keys`.
    """

    def __init__(
        self,
        redis: Redis,
        provider: str,
        account: str,
        *,
        scopes: ScopeKeys | None = None,
        rate_per_s: float | None = None,
        burst: int = 1,
        max_wait_s: float = 30.0,
        prefix: str = PREFIX,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.scopes = scopes or ScopeKeys({SCOPE_ACCOUNT: f"{provider}:{account}"}, account_verified=True)
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self.max_wait_s = max_wait_s
        self.calls = 0
        self.throttled_s = 0.0

    @property
    def key(self) -> str:
        """The key of this account's own pacing (usage, steady rate): the account once trusted."""
        return f"{self._prefix}:{self.scopes.resolve(SCOPE_ACCOUNT)[1]}"

    def configure(self, *, rate_per_s: float | None, burst: int = 1) -> None:
        """Set a steady request rate (e.g. Shopify's leaky bucket: 2/s, burst 40)."""
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)

    def trust_account(self) -> None:
        """The provider showed this credential reaches the account: account blocks apply to it."""
        self.scopes = self.scopes.verified()

    def scope_key(self, scope: str) -> tuple[str, str]:
        """(scope, key) a block at ``scope`` lands on (see :meth:`ScopeKeys.resolve`)."""
        return self.scopes.resolve(scope)

    async def _sleep(self, seconds: float, reason: str, scope: str = SCOPE_ACCOUNT) -> None:
        if seconds <= 0:
            return
        if seconds > self.max_wait_s:
            raise RateLimited(f"rate limit: {reason}; retry in {seconds:.0f}s", seconds, scope=scope)
        self.throttled_s += seconds
        log.debug("rate_limit_wait", key=self.key, seconds=round(seconds, 3), reason=reason)
        await asyncio.sleep(seconds)

    async def _blocks(self) -> tuple[list[tuple[float, str]], bytes | None]:
        """Every scope's block and this account's usage, in one round trip."""
        scopes = list(self.scopes.keys.items())
        values = await self._redis.mget(
            [blocked_key(key, self._prefix) for _, key in scopes] + [f"{self.key}:usage"]
        )
        blocks = [(float(v), scope) for (scope, _), v in zip(scopes, values[:-1], strict=True) if v]
        return blocks, values[-1]

    async def acquire(self) -> None:
        """Wait until one more request is allowed (blocks at any scope, usage slowdown, steady rate).

        One round trip per call when nothing is in the way: an ``MGET`` of the blocks and
        the usage, or, with a steady rate configured, one Lua call that also takes the
        rate's slot.
        """
        if not self.rate_per_s:
            blocks, usage = await self._blocks()
            if blocks:
                until, scope = max(blocks)
                await self._sleep(until - time.time(), f"{scope} blocked by the platform", scope)
            if usage:
                await self._slow_down(float(usage))
            self.calls += 1
            return
        usage_waited = False
        while True:
            index, until, pct, wait = await self._paced(usage_waited)
            if index:
                scope = list(self.scopes.keys)[index - 1]
                await self._sleep(until - time.time(), f"{scope} blocked by the platform", scope)
            elif pct is not None and not usage_waited:
                usage_waited = True
                await self._slow_down(pct)
            elif wait > 0:
                await self._sleep(wait, "steady request rate")
            else:
                break
        self.calls += 1

    async def _slow_down(self, pct: float) -> None:
        if pct >= SLOWDOWN_FROM_PCT:
            # Slow down progressively between 70% and 95%, as production connectors do.
            await self._sleep(min(5.0, (pct - SLOWDOWN_FROM_PCT) / 5.0), f"usage at {pct:.0f}%")

    async def _paced(self, usage_waited: bool) -> tuple[int, float, float | None, float]:
        """(blocked scope's 1-based index or 0, its end, usage to slow down for, rate wait): one call."""
        keys = [blocked_key(key, self._prefix) for key in self.scopes.keys.values()]
        keys += [f"{self.key}:usage", f"{self.key}:gcra"]
        args = [
            repr(time.time()),
            repr(1.0 / (self.rate_per_s or 1.0)),
            str(self.burst),
            "1" if usage_waited else "0",
            repr(SLOWDOWN_FROM_PCT),
        ]
        try:
            reply = await self._redis.evalsha(_PACED_SHA, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            reply = await self._redis.eval(_PACED, len(keys), *keys, *args)  # type: ignore[misc]
        index, until, usage, wait = (v.decode() if isinstance(v, bytes) else str(v) for v in reply)
        return int(index), float(until), float(usage) if usage else None, float(wait)

    async def report_usage(self, pct: float, *, regain_s: float | None = None) -> None:
        """Record the platform's usage percentage (0-100) for this account.

        At or above 95% the account is blocked for ``regain_s`` (default 60 s)
        for every worker, before the platform starts refusing calls.
        """
        await self._redis.set(f"{self.key}:usage", repr(float(pct)), ex=300)
        if pct >= STOP_AT_PCT:
            await self.block(regain_s if regain_s is not None else 60.0)

    async def block(self, seconds: float, *, scope: str = SCOPE_ACCOUNT) -> str:
        """Block ``scope`` for ``seconds`` across all workers (after a throttle error).

        Returns the scope actually blocked: an untrusted account or an undeclared
        scope falls back to ``token`` (see :meth:`ScopeKeys.resolve`).
        """
        resolved, key = self.scopes.resolve(scope)
        await block_key(self._redis, key, seconds, prefix=self._prefix)
        if resolved != scope:
            log.info("rate_limit_scope_narrowed", requested=scope, blocked=resolved)
        return resolved

    async def blocked_for(self) -> float:
        """Seconds until every scope of this connection is free again (0 when free)."""
        blocks, _ = await self._blocks()
        return max(0.0, max(blocks)[0] - time.time()) if blocks else 0.0

    def stats(self) -> dict[str, Any]:
        """What this limiter saw, for ``sync_runs``: calls made and seconds spent waiting."""
        return {"api_calls": self.calls, "seconds_throttled": round(self.throttled_s, 3)}


async def block_key(redis: Redis, key: str, seconds: float, *, prefix: str = PREFIX) -> float:
    """Block scope key ``key`` for ``seconds`` (never shortening a longer block); returns the end."""
    until = time.time() + max(0.0, seconds)
    current = await redis.get(blocked_key(key, prefix))
    if current is not None and float(current) >= until:
        return float(current)
    await redis.set(blocked_key(key, prefix), repr(until), px=max(1, int(seconds * 1000)))
    return until


async def blocked_until(redis: Redis, keys: Collection[str], *, prefix: str = PREFIX) -> dict[str, float]:
    """Scope key -> until when it is blocked, for the blocked ones among ``keys`` (one MGET)."""
    ordered = list(keys)
    if not ordered:
        return {}
    values = await redis.mget([blocked_key(k, prefix) for k in ordered])
    now = time.time()
    return {k: float(v) for k, v in zip(ordered, values, strict=True) if v and float(v) > now}
