"""The daily operation budget of a developer token, shared by every worker, and realtime pacing.

Google counts every query as one operation (paged or streamed) against the developer token /
cloud project (``rateScope: DEVELOPER``): Explorer access allows 2,880 a day, Basic 15,000, and the
day ends at midnight Pacific. :class:`OperationBudget` counts the operations metricx sends with one
atomic counter per token and Pacific day in the provider cache, so every worker and job of every
connection of that token spends from the same budget.

Pacing: the realtime interval of the token's connections is the shortest of 15, 30, 60, 120 and
240 minutes at which the token's connections (those that asked for a realtime sync this hour or the
last) can sync until the reset within the budget left after a reserve (kept for entity refreshes,
closing days, attribution and new backfills). When even 240 minutes would not fit, realtime pauses
until the reset. A call that would go past the budget itself is refused here (``RateLimited`` at developer
scope until midnight Pacific) before Google has to answer ``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core import SCOPE_DEVELOPER, ProviderCache, RateLimited
from metricx_google.failures import PACIFIC, seconds_until_pacific_midnight

#: Operations per day of each access level (https://developers.google.com/google-ads/api/docs/api-policy/access-levels).
ACCESS_LEVELS: dict[str, int | None] = {"explorer": 2_880, "basic": 15_000, "standard": None}
#: Realtime intervals the pacing chooses from, shortest first (seconds).
INTERVALS_S = (900, 1_800, 3_600, 7_200, 14_400)
#: Share of the daily budget realtime pacing leaves for closing days, attribution and backfills.
RESERVE = 0.10
#: Operations of one realtime sync: the campaign and ad_group_ad metric queries (entities and
#: account facts are re-read hours apart; the reserve covers them).
REALTIME_OPS = 2
#: A connection is due this long before its interval is over (fan-out ticks are not exact).
DUE_SLACK_S = 120

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class BudgetState:
    """Where a developer token stands today (what the status endpoints show)."""

    token: str  # a digest of the developer token, never the token
    daily: int | None
    used: int
    interval_s: int | None  # the realtime interval now; None while realtime is paused
    resets_in_s: float

    @property
    def remaining(self) -> int | None:
        return None if self.daily is None else max(0, self.daily - self.used)

    def describe(self) -> str:
        """One line for the connection (its first 60 characters carry the numbers: `metricx status`)."""
        budget = f"{self.used:,}/{self.daily:,}" if self.daily else f"{self.used:,} (no cap)"
        head = f"developer token used {budget} Google Ads operations today"
        if self.interval_s is None:
            return (
                f"{head}: realtime paused until the quota resets at midnight Pacific (the rest closes days)"
            )
        return (
            f"{head}: realtime every {self.interval_s // 60} min until the quota resets at midnight Pacific"
        )


class OperationBudget:
    """One developer token's operations today, counted in the provider cache by every worker."""

    def __init__(self, cache: ProviderCache, token_identity: str, daily: int | None, clock: Clock) -> None:
        self._cache = cache
        self.token = hashlib.sha256(f"google-developer|{token_identity}".encode()).hexdigest()[:16]
        self.daily = daily
        self._clock = clock

    def _day_hour(self, now: datetime) -> tuple[str, int]:
        local = now.astimezone(PACIFIC)
        return local.date().isoformat(), local.hour

    def _hour_key(self, what: str, now: datetime) -> str:
        day, hour = self._day_hour(now)
        return f"{what}:{self.token}:{day}:h{hour}"

    def _day_key(self, now: datetime) -> str:
        return f"ops:{self.token}:{self._day_hour(now)[0]}"

    async def spend(self, operations: int = 1) -> int:
        """Count ``operations`` about to be sent; RateLimited (developer scope) past the budget."""
        now = self._clock()
        day_key = self._day_key(now)
        reset_s = seconds_until_pacific_midnight(now)
        used = await self._cache.incr(day_key, operations, ttl_s=reset_s + 3600)
        if self.daily is not None and used > self.daily:
            await self._cache.incr(day_key, -operations, ttl_s=reset_s + 3600)
            raise RateLimited(
                f"Google Ads: the developer token's daily budget of {self.daily:,} operations is spent; "
                f"syncs resume when the quota resets at midnight Pacific (in {reset_s:.0f}s)",
                reset_s,
                scope=SCOPE_DEVELOPER,
            )
        return used

    async def note_connection(self, connection_id: str) -> None:
        """Count ``connection_id`` among the token's connections syncing realtime this hour."""
        now = self._clock()
        seen = f"{self._hour_key('seen', now)}:{connection_id}"
        if await self._cache.set(seen, "1", ttl_s=3 * 3600, only_if_absent=True):
            await self._cache.incr(self._hour_key("conns", now), ttl_s=3 * 3600)

    async def state(self) -> BudgetState:
        """Today's use and the realtime interval it allows now."""
        now = self._clock()
        keys = [
            self._day_key(now),
            self._hour_key("conns", now),
            self._hour_key("conns", now - timedelta(hours=1)),
        ]
        used_s, this_hour, last_hour = await self._cache.get_many(keys)
        used = int(used_s or 0)
        connections = max(int(this_hour or 0), int(last_hour or 0), 1)
        reset_s = seconds_until_pacific_midnight(now)
        return BudgetState(self.token, self.daily, used, self._interval(used, connections, reset_s), reset_s)

    def _interval(self, used: int, connections: int, reset_s: float) -> int | None:
        """The shortest interval at which the token's realtime syncs last until the reset."""
        if self.daily is None:
            return INTERVALS_S[0]
        left = self.daily * (1 - RESERVE) - used
        for interval in INTERVALS_S:
            if connections * REALTIME_OPS * reset_s / interval <= left:
                return interval
        return None
