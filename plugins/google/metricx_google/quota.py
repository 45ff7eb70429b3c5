"""The daily operation budget of a developer token, shared by every worker, and realtime pacing.

Google counts every query as one operation (paged or streamed) against the developer token /
cloud project (``rateScope: DEVELOPER``): Explorer access allows 2,880 a day, Basic 15,000, and the
day ends at midnight Pacific. :class:`OperationBudget` counts the operations metricx sends with one
atomic counter per token and Pacific day in the provider cache, so every worker and job of every
connection of that token spends from the same budget.

Pacing: the realtime interval of the token's connections is the shortest of 15, 30, 60, 120 and
240 minutes at which the token's recent burn rate (the previous hour's operations, scaled to
15-minute syncs) lasts until the reset within the budget left after a reserve (kept for closing
days, attribution and new backfills). When even 240 minutes would not fit, realtime pauses until
the reset. A call that would go past the budget itself is refused here (``RateLimited`` at developer
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
        budget = f"{self.used:,} of {self.daily:,}" if self.daily else f"{self.used:,} (no daily cap)"
        if self.interval_s is None:
            return (
                f"Google Ads daily operations of this developer token: {budget} used; realtime paused "
                f"until the quota resets at midnight Pacific (the rest is kept for closing days)"
            )
        return (
            f"Google Ads daily operations of this developer token: {budget} used; realtime every "
            f"{self.interval_s // 60} min until the quota resets at midnight Pacific"
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

    def _keys(self, now: datetime) -> tuple[str, str, str, str]:
        day, hour = self._day_hour(now)
        previous = now - timedelta(hours=1)
        pday, phour = self._day_hour(previous)
        base = f"ops:{self.token}"
        return (
            f"{base}:{day}",
            f"{base}:{day}:h{hour}",
            f"{base}:{pday}:h{phour}",
            f"{base}:{pday}:c{phour}",
        )

    async def spend(self, operations: int = 1) -> int:
        """Count ``operations`` about to be sent; RateLimited (developer scope) past the budget."""
        now = self._clock()
        day_key, hour_key, _, _ = self._keys(now)
        reset_s = seconds_until_pacific_midnight(now)
        used = await self._cache.incr(day_key, operations, ttl_s=reset_s + 3600)
        await self._cache.incr(hour_key, operations, ttl_s=3 * 3600)
        if self.daily is not None and used > self.daily:
            await self._cache.incr(day_key, -operations, ttl_s=reset_s + 3600)
            raise RateLimited(
                f"Google Ads: the developer token's daily budget of {self.daily:,} operations is spent; "
                f"syncs resume when the quota resets at midnight Pacific (in {reset_s:.0f}s)",
                reset_s,
                scope=SCOPE_DEVELOPER,
            )
        return used

    async def state(self) -> BudgetState:
        """Today's use and the realtime interval it allows now."""
        now = self._clock()
        day_key, hour_key, prev_key, prev_cadence_key = self._keys(now)
        used_s, hour_s, prev_s, prev_cadence_s = await self._cache.get_many(
            [day_key, hour_key, prev_key, prev_cadence_key]
        )
        used = int(used_s or 0)
        reset_s = seconds_until_pacific_midnight(now)
        interval = self._interval(
            used, int(prev_s or 0), int(prev_cadence_s or 900), int(hour_s or 0), now, reset_s
        )
        cadence_key = f"ops:{self.token}:{self._day_hour(now)[0]}:c{self._day_hour(now)[1]}"
        await self._cache.set(cadence_key, str(interval or INTERVALS_S[-1] * 2), ttl_s=3 * 3600)
        return BudgetState(self.token, self.daily, used, interval, reset_s)

    def _interval(
        self, used: int, prev_hour: int, prev_cadence_s: int, this_hour: int, now: datetime, reset_s: float
    ) -> int | None:
        if self.daily is None:
            return INTERVALS_S[0]
        left = self.daily * (1 - RESERVE) - used
        if left <= 0:
            return None
        minutes = now.astimezone(PACIFIC).minute
        # Operations per hour the token's connections would spend at 15-minute syncs.
        if prev_hour:
            full_rate = prev_hour * prev_cadence_s / INTERVALS_S[0]
        else:
            full_rate = this_hour * 60 / max(minutes, 15)
        hours_left = reset_s / 3600
        for interval in INTERVALS_S:
            if full_rate * INTERVALS_S[0] / interval * hours_left <= left:
                return interval
        return None
