"""The developer token's daily operation budget and realtime pacing (fakeredis; the fleet test runs
the same against real PostgreSQL and Redis through the worker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import child
from metricx_google import GoogleAdsProvider
from metricx_google.quota import ACCESS_LEVELS, OperationBudget

from core import RateLimited, SyncMode, SyncWindow

# 09:00 in Los Angeles: 15 hours until Google's quotas reset.
MORNING = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_access_levels_are_googles() -> None:
    assert ACCESS_LEVELS == {"explorer": 2_880, "basic": 15_000, "standard": None}


async def test_spending_past_the_budget_is_refused_before_google_is_asked(ctx) -> None:
    budget = OperationBudget(ctx.cache, "dev-token", 3, Clock(MORNING))
    assert [await budget.spend() for _ in range(3)] == [1, 2, 3]
    with pytest.raises(RateLimited) as caught:
        await budget.spend()
    assert caught.value.scope == "developer"
    assert caught.value.retry_after_s == pytest.approx(15 * 3600)  # until midnight Pacific
    assert (await budget.state()).used == 3  # the refused call was not counted
    # Another developer token has its own budget; the next Pacific day starts from zero.
    assert await OperationBudget(ctx.cache, "other-token", 3, Clock(MORNING)).spend() == 1
    assert await OperationBudget(ctx.cache, "dev-token", 3, Clock(MORNING + timedelta(hours=16))).spend() == 1


async def test_the_interval_follows_the_fleet_and_the_budget_left(ctx) -> None:
    clock = Clock(MORNING)
    budget = OperationBudget(ctx.cache, "dev-fleet", 2_880, clock)
    assert (await budget.state()).interval_s == 900  # one connection: every 15 minutes fits
    for i in range(30):
        await budget.note_connection(f"conn-{i}")
    # 30 connections x 2 operations, 15 hours left, 2,592 usable: every 30 min needs 1,800... fits.
    assert (await budget.state()).interval_s == 1_800
    await budget.spend(1_500)
    assert (await budget.state()).interval_s == 3_600  # 1,092 left: hourly (900 needed)
    await budget.spend(800)
    assert (await budget.state()).interval_s == 14_400  # 292 left: every 4 hours (225)
    await budget.spend(100)
    state = await budget.state()
    assert state.interval_s is None and "realtime paused" in state.describe()
    assert state.describe().startswith("developer token used 2,400/2,880 Google Ads operations today")


async def test_realtime_pause_skips_a_connection_until_its_interval_is_over(
    settings, ctx, creds, sim
) -> None:
    provider = GoogleAdsProvider(settings.model_copy(update={"daily_operations": 600}))
    clock = Clock(sim.now())
    provider.clock = clock
    account = child()
    today = sim.accounts[account.external_account_id].today(sim.now())
    window = SyncWindow(SyncMode.realtime, today, today, "America/New_York")
    budget = provider.budget(ctx)
    for i in range(20):  # the token's other connections syncing this hour
        await budget.note_connection(f"other-{i}")
    assert await provider.realtime_pause(ctx, account) is None  # never fetched: due
    _ = [b async for b in provider.fetch_metrics(ctx, account, creds, window)]
    assert sim.stats["operations"] == 2  # two queries: campaign and ad_group_ad
    clock.now += timedelta(minutes=15)
    reason = await provider.realtime_pause(ctx, account)
    assert reason is not None and "realtime every" in reason and "last realtime sync 15 min ago" in reason
    assert reason.startswith("developer token used 2/600 Google Ads operations today")
    clock.now += timedelta(hours=4)
    assert await provider.realtime_pause(ctx, account) is None
