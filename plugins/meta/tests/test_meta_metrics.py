"""Metric fetches equal the simulator's ground truth for every day and level."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from meta_helpers import BASE_URL, by_key, collect, load_fixture, local_today, ref, truth_by_key, window
from metricx_meta import MetaProvider, MetaSettings
from metricx_meta.insights import canonical_purchase, clicks_all, to_metric
from metricx_meta.simulator import DEFAULT_TOKEN, SimState, create_app
from metricx_meta.simulator.query import purchase_counts

from core import AccountRef, ConfigError, Credentials, MetricRecord, ProviderContext, SyncMode, SyncWindow


async def fetch(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, win: SyncWindow, account: str = "1001"
) -> list[MetricRecord]:
    batches = await collect(provider.fetch_metrics(ctx, ref(account), creds, win))
    return [record for batch in batches for record in batch]


def level_totals(records: list[MetricRecord]) -> dict[tuple[str, str], tuple[Decimal, int, Decimal]]:
    sums: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, Decimal(0)])
    for r in records:
        total = sums[(r.level, r.metrics_date.isoformat())]
        total[0] += r.spend
        total[1] += r.impressions
        total[2] += r.conversions
    return {key: (v[0], v[1], v[2]) for key, v in sums.items()}


def assert_levels_agree(records: list[MetricRecord]) -> None:
    """Per day, campaigns, ad sets and ads sum to the same totals (deleted ads included)."""
    totals = level_totals(records)
    for day in {d for _, d in totals}:
        assert totals[("campaign", day)] == totals[("adset", day)] == totals[("ad", day)], day


async def test_realtime_today_equals_truth(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState
) -> None:
    today = local_today(sim, "1001")
    records = await fetch(provider, ctx, creds, window(SyncMode.realtime, today, today))

    assert records and {r.metrics_date for r in records} == {today}
    assert by_key(records) == truth_by_key(sim, "1001", today, today)
    assert_levels_agree(records)
    assert all(r.currency == "USD" for r in records)


async def test_attribution_last_7_days_equals_truth(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState
) -> None:
    end = local_today(sim, "1001") - timedelta(days=1)
    start = end - timedelta(days=6)
    records = await fetch(provider, ctx, creds, window(SyncMode.attribution, start, end))

    assert by_key(records) == truth_by_key(sim, "1001", start, end)
    assert len({r.metrics_date for r in records}) == 7
    assert_levels_agree(records)
    assert not sim.runs  # attribution windows use plain GETs


async def test_backfill_90_days_via_async_runs_equals_truth(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState
) -> None:
    end = local_today(sim, "2002")
    start = end - timedelta(days=89)
    win = window(SyncMode.backfill, start, end, "2002")
    records = await fetch(provider, ctx, creds, win, account="2002")

    assert len(sim.runs) == 13 * 3  # 7-day slices x 3 levels
    assert by_key(records) == truth_by_key(sim, "2002", start, end)
    assert_levels_agree(records)
    assert all(r.spend == r.spend.to_integral_value() for r in records)  # JPY has no minor unit


async def test_purchases_are_omni_purchase_and_clicks_are_link_clicks(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState
) -> None:
    """Pins the chosen purchase type: the simulator gives omni_purchase, purchase and the pixel type
    different values, so counting `purchase`, the pixel's type or their sum fails here."""
    end = local_today(sim, "1001") - timedelta(days=30)
    start = end - timedelta(days=6)
    records = await fetch(provider, ctx, creds, window(SyncMode.attribution, start, end))
    truth = truth_by_key(sim, "1001", start, end)
    converting = [r for r in records if r.conversions > 0]
    assert converting
    others = 0
    for r in records:
        key = (r.level, r.entity_external_id, r.metrics_date.isoformat())
        counts = purchase_counts(int(r.conversions))
        assert r.conversions == truth[key][3] == counts["omni_purchase"]
        assert r.revenue == truth[key][4]
        assert r.clicks == truth[key][2]  # inline_link_clicks, not Meta's "clicks (all)"
        if counts["purchase"] != counts["omni_purchase"]:
            others += 1
    assert others  # some rows have a different `purchase` / pixel count: the pin is not vacuous
    raw = (await sim_rows(sim, start, end))[0]
    assert int(raw["clicks"]) > int(raw["inline_link_clicks"])  # clicks (all) differ from link clicks


async def sim_rows(sim: SimState, start: Any, end: Any) -> list[dict[str, Any]]:
    transport = httpx.ASGITransport(app=create_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        response = await client.get(
            "/v26.0/act_1001/insights",
            params={
                "level": "ad",
                "time_range": json.dumps({"since": start.isoformat(), "until": end.isoformat()}),
                "time_increment": "1",
                "fields": "ad_id,clicks,inline_link_clicks",
                "access_token": DEFAULT_TOKEN,
            },
        )
    return list(response.json()["data"])


def test_purchase_fallback_order_from_fixture() -> None:
    """omni_purchase first; without it `purchase`; without both the pixel's type: never a sum."""
    row = load_fixture("insights_row_actions.json")["body"]["data"][0]
    actions, values = row["actions"], row["action_values"]
    assert canonical_purchase(actions, values) == ("5", "250.5")
    without_omni = [a for a in actions if a["action_type"] != "omni_purchase"]
    without_omni_v = [a for a in values if a["action_type"] != "omni_purchase"]
    assert canonical_purchase(without_omni, without_omni_v) == ("4", "200.4")
    pixel_only = [a for a in without_omni if a["action_type"] != "purchase"]
    pixel_only_v = [a for a in without_omni_v if a["action_type"] != "purchase"]
    assert canonical_purchase(pixel_only, pixel_only_v) == ("3", "150.3")
    record = to_metric("ad", row)
    assert (record.clicks, clicks_all(row)) == (int(row["inline_link_clicks"]), int(row["clicks"]))


async def test_utc_plus_account_today_is_the_accounts_day(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    # 23:40 UTC on Nov 20 is already 12:40 on Nov 21 in Auckland and 08:40 in Tokyo.
    await sim_post("/_sim/clock", {"now": "2026-11-20T23:40:00+00:00"})
    utc_today = sim.now().date()
    for account in ("3003", "2002"):
        today = local_today(sim, account)
        assert today == utc_today + timedelta(days=1)
        records = await fetch(provider, ctx, creds, window(SyncMode.realtime, today, today, account), account)
        assert records and by_key(records) == truth_by_key(sim, account, today, today)

        tomorrow = today + timedelta(days=1)
        with pytest.raises(ConfigError, match="cannot be in the future"):
            await fetch(provider, ctx, creds, window(SyncMode.realtime, tomorrow, tomorrow, account), account)


async def test_utc_minus_account_rejects_the_utc_date_when_it_is_tomorrow(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    await sim_post("/_sim/clock", {"now": "2026-11-21T02:00:00+00:00"})  # 18:00 on Nov 20 in Los Angeles
    utc_today = sim.now().date()
    local = local_today(sim, "1001")
    assert local == utc_today - timedelta(days=1)

    assert await fetch(provider, ctx, creds, window(SyncMode.realtime, local, local))
    with pytest.raises(ConfigError, match="cannot be in the future"):
        await fetch(provider, ctx, creds, window(SyncMode.realtime, utc_today, utc_today))


async def test_attribution_refetch_later_returns_higher_conversions(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    end = local_today(sim, "1001") - timedelta(days=1)
    win = window(SyncMode.attribution, end - timedelta(days=6), end)
    first = by_key(await fetch(provider, ctx, creds, win))

    await sim_post("/_sim/clock", {"advance_s": 4 * 86400})  # late conversions follow time
    second = by_key(await fetch(provider, ctx, creds, win))

    assert second == truth_by_key(sim, "1001", win.start, win.end)
    assert first.keys() == second.keys()
    assert all(second[k][3] >= first[k][3] and second[k][4] >= first[k][4] for k in first)
    assert sum(v[3] for v in second.values()) > sum(v[3] for v in first.values())
    assert all(second[k][:3] == first[k][:3] for k in first)  # spend, impressions, clicks are final


async def test_today_grows_with_the_time_of_day(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    today = local_today(sim, "1001")
    win = window(SyncMode.realtime, today, today)
    morning = level_totals(await fetch(provider, ctx, creds, win))
    await sim_post("/_sim/clock", {"advance_s": 3 * 3600})
    afternoon = level_totals(await fetch(provider, ctx, creds, win))

    key = ("campaign", today.isoformat())
    assert afternoon[key][0] > morning[key][0] and afternoon[key][1] > morning[key][1]


async def test_large_backfill_is_streamed_page_by_page(
    settings: MetaSettings, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    spec = {"account_id": "4004", "campaigns": 10, "adsets_per_campaign": 3, "ads_per_adset": 4}
    await sim_post("/_sim/accounts", {**spec, "timezone": "Asia/Kolkata", "currency": "INR", "seed": 4})
    provider = MetaProvider(settings.model_copy(update={"page_size": 40}))
    today = sim.now().astimezone(ZoneInfo("Asia/Kolkata")).date()
    win = SyncWindow(SyncMode.backfill, today - timedelta(days=89), today, "Asia/Kolkata")
    account = AccountRef("c", "w", "act_4004", timezone="Asia/Kolkata")

    batches, runs_at_first_batch, rows = 0, None, 0
    async for batch in provider.fetch_metrics(ctx, account, creds, win):
        runs_at_first_batch = runs_at_first_batch or len(sim.runs)
        assert 0 < len(batch) <= 40
        batches += 1
        rows += len(batch)

    assert runs_at_first_batch == 1  # the first page arrived before any other report was requested
    assert batches > 100
    expected = sum(1 for _ in truth_by_key(sim, "4004", win.start, win.end))
    assert rows == expected
