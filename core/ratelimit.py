"""A Redis-backed rate limiter shared by every worker, keyed by (provider, account).

Providers call :meth:`AccountLimiter.acquire` before each request and report
what the platform tells them (usage percentages, throttle errors) so that all
workers slow down together, before the platform throttles.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from redis.asyncio import Redis

from core.errors import RateLimited
from core.keys import RATE_LIMIT_PREFIX

log = structlog.get_logger(__name__)

# GCRA: one request every `interval` seconds with a burst of `burst` requests.
_GCRA = """
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
if tat < now then tat = now end
local allow_at = tat - (burst - 1) * interval
if allow_at > now then return tostring(allow_at - now) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil((tat + interval - now) * 1000) + 1000)
return '0'
"""

SLOWDOWN_FROM_PCT = 70.0
STOP_AT_PCT = 95.0


class AccountLimiter:
    """Pacing for one (provider, account); cheap to create per sync.

    ``max_wait_s``: a wait longer than this raises :class:`RateLimited` instead
    of sleeping, so a worker slot is not held for a long quota.
    """

    def __init__(
        self,
        redis: Redis,
        provider: str,
        account: str,
        *,
        rate_per_s: float | None = None,
        burst: int = 1,
        max_wait_s: float = 30.0,
        prefix: str = RATE_LIMIT_PREFIX,
    ) -> None:
        self._redis = redis
        self.key = f"{prefix}:{provider}:{account}"
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self.max_wait_s = max_wait_s
        self.calls = 0
        self.throttled_s = 0.0

    def configure(self, *, rate_per_s: float | None, burst: int = 1) -> None:
        """Set a steady request rate (e.g. Shopify's leaky bucket: 2/s, burst 40)."""
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)

    async def _sleep(self, seconds: float, reason: str) -> None:
        if seconds <= 0:
            return
        if seconds > self.max_wait_s:
            raise RateLimited(f"rate limit: {reason}; retry in {seconds:.0f}s", seconds)
        self.throttled_s += seconds
        log.debug("rate_limit_wait", key=self.key, seconds=round(seconds, 3), reason=reason)
        await asyncio.sleep(seconds)

    async def acquire(self) -> None:
        """Wait until one more request is allowed (blocks, usage slowdown, steady rate)."""
        blocked_until = await self._redis.get(f"{self.key}:blocked")
        if blocked_until:
            await self._sleep(float(blocked_until) - time.time(), "account blocked by the platform")
        usage = await self._redis.get(f"{self.key}:usage")
        if usage:
            pct = float(usage)
            if pct >= SLOWDOWN_FROM_PCT:
                # Slow down progressively between 70% and 95%, as production connectors do.
                await self._sleep(min(5.0, (pct - SLOWDOWN_FROM_PCT) / 5.0), f"usage at {pct:.0f}%")
        if self.rate_per_s:
            interval = 1.0 / self.rate_per_s
            while True:
                wait = float(
                    await self._redis.eval(  # type: ignore[misc]
                        _GCRA, 1, f"{self.key}:gcra", repr(time.time()), repr(interval), str(self.burst)
                    )
                )
                if wait <= 0:
                    break
                await self._sleep(wait, "steady request rate")
        self.calls += 1

    async def report_usage(self, pct: float, *, regain_s: float | None = None) -> None:
        """Record the platform's usage percentage (0-100) for this account.

        At or above 95% the account is blocked for ``regain_s`` (default 60 s)
        for every worker, before the platform starts refusing calls.
        """
        await self._redis.set(f"{self.key}:usage", repr(float(pct)), ex=300)
        if pct >= STOP_AT_PCT:
            await self.block(regain_s if regain_s is not None else 60.0)

    async def block(self, seconds: float, *, scope: str = "account") -> None:
        """Block the account for ``seconds`` across all workers (after a throttle error).

        ``scope`` is accepted for the throttle scopes of issue 12 and not honoured yet: every block
        is an account block here.
        """
        until = time.time() + max(0.0, seconds)
        current = await self._redis.get(f"{self.key}:blocked")
        if current is None or float(current) < until:
            await self._redis.set(f"{self.key}:blocked", repr(until), px=max(1, int(seconds * 1000)))

    async def blocked_for(self) -> float:
        """Seconds the account stays blocked (0 when free)."""
        value = await self._redis.get(f"{self.key}:blocked")
        return max(0.0, float(value) - time.time()) if value else 0.0

    def stats(self) -> dict[str, Any]:
        return {"api_calls": self.calls, "seconds_throttled": round(self.throttled_s, 3)}
