"""The provider end to end against the simulator: accounts, entities, metrics equal to ground truth."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from conftest import FROZEN_NOW, child
from metricx_google import GoogleAdsProvider
from metricx_google.simulator import CHILD_BERLIN_ID, CHILD_NY_ID, MANAGER_ID, SimState, truth

from core import AuthError, ConfigError, Credentials, MetricRecord, PayloadError, SyncMode, SyncWindow


async def _metrics(provider, ctx, account, creds, window) -> list[MetricRecord]:
    out: list[MetricRecord] = []
    async for batch in provider.fetch_metrics(ctx, account, creds, window):
        assert batch, "empty batches are not yielded"
        out.extend(batch)
    return out


def _window(sim: SimState, customer_id: str, mode: SyncMode, days: int) -> SyncWindow:
    account = sim.accounts[customer_id]
    today = account.today(FROZEN_NOW)
    return SyncWindow(mode, today - timedelta(days=days - 1), today, account.time_zone)


def test_capabilities(provider: GoogleAdsProvider) -> None:
    caps = provider.capabilities
    assert provider.name == "google"
    assert caps.levels == ("campaign", "ad_group", "ad")
    assert (caps.attribution_window_days, caps.backfill_days) == (7, 90)


def test_check_credentials_needs_refresh_token(provider: GoogleAdsProvider) -> None:
    with pytest.raises(AuthError, match=r"Missing refresh token\. Please reconnect Google Ads\."):
        provider.check_credentials(Credentials(access_token="ya29.only-access"))
    provider.check_credentials(Credentials(refresh_token="1//x"))


async def test_validate_token_returns_none_and_mints(provider, ctx, creds, sim) -> None:
    assert await provider.validate_token(ctx, child(), creds) is None
    assert sim.stats["token_mints"] == 1


@pytest.mark.parametrize(
    ("customer_id", "tz", "currency"),
    [(CHILD_NY_ID, "America/New_York", "USD"), (CHILD_BERLIN_ID, "Europe/Berlin", "EUR")],
)
async def test_child_account_through_manager(provider, ctx, creds, customer_id, tz, currency) -> None:
    info = await provider.fetch_account(ctx, child(customer_id), creds)
    assert (info.timezone, info.currency) == (tz, currency)
    assert info.name


async def test_child_without_login_customer_id_is_a_config_error(provider, ctx, creds) -> None:
    with pytest.raises(ConfigError, match="login_customer_id"):
        await provider.fetch_account(ctx, child(login=None), creds)


async def test_hyphenated_ids_are_accepted(provider, ctx, creds) -> None:
    account = child(login="100-000-0001")
    info = await provider.fetch_account(ctx, account, creds)
    assert info.currency == "USD"


async def test_manager_account_is_refused_with_its_children(provider, ctx, creds) -> None:
    with pytest.raises(ConfigError) as caught:
        await provider.fetch_account(ctx, child(MANAGER_ID, login=None), creds)
    assert "manager account" in caught.value.message
    assert CHILD_NY_ID in caught.value.message and CHILD_BERLIN_ID in caught.value.message


async def test_list_child_accounts(provider, ctx, creds) -> None:
    children = await provider.list_child_accounts(ctx, child(MANAGER_ID, login=None), creds)
    by_id = {c.customer_id: c for c in children}
    assert set(by_id) == {CHILD_NY_ID, CHILD_BERLIN_ID}
    assert by_id[CHILD_BERLIN_ID].timezone == "Europe/Berlin"
    assert by_id[CHILD_BERLIN_ID].currency == "EUR"


async def test_metrics_on_manager_is_a_config_error(provider, ctx, creds, sim) -> None:
    window = _window(sim, MANAGER_ID, SyncMode.realtime, 1)
    with pytest.raises(ConfigError, match="manager account"):
        await _metrics(provider, ctx, child(MANAGER_ID, login=None), creds, window)


async def test_entities_with_parents_and_all_statuses(provider, ctx, creds, sim) -> None:
    batches = [b async for b in provider.sync_entities(ctx, child(CHILD_BERLIN_ID), creds)]
    records = [r for b in batches for r in b]
    levels = [r.level for r in records]
    assert levels == sorted(levels, key=("campaign", "ad_group", "ad").index), "parents come first"
    account = sim.accounts[CHILD_BERLIN_ID]
    for level in ("campaign", "ad_group", "ad"):
        expected = {e.key: e for e in account.entities(level)}
        got = {r.external_id: r for r in records if r.level == level}
        assert set(got) == set(expected)
        for entity_id, record in got.items():
            assert record.status == expected[entity_id].status
    statuses = {r.status for r in records if r.level == "ad"}
    assert {"ENABLED", "PAUSED", "REMOVED"} <= statuses
    assert {r.status for r in records if r.level == "campaign"} == {"ENABLED", "PAUSED", "REMOVED"}
    ads = [r for r in records if r.level == "ad"]
    assert all(r.parent_level == "ad_group" for r in ads)
    assert any(r.name is None for r in ads), "unnamed ads are kept"
    groups = {r.external_id: r for r in records if r.level == "ad_group"}
    assert all(r.parent_level == "campaign" and r.parent_external_id for r in groups.values())
    assert all(a.parent_external_id in groups for a in ads)


async def test_pausing_an_ad_shows_up_in_the_next_entity_sync(provider, ctx, creds, sim, http) -> None:
    ad = sim.accounts[CHILD_NY_ID].entities("ad")[0]
    response = await http.post(
        f"/_sim/accounts/{CHILD_NY_ID}/entities/ad/{ad.key}", json={"status": "PAUSED"}
    )
    assert response.status_code == 200
    records = [r async for b in provider.sync_entities(ctx, child(), creds) for r in b]
    assert next(r for r in records if r.external_id == ad.key).status == "PAUSED"
    # The ad with the same id in another ad group is another ad: it keeps its own status.
    twins = [r for r in records if r.level == "ad" and r.external_id.endswith(f"~{ad.id}")]
    assert len(twins) > 1 and {r.status for r in twins if r.external_id != ad.key} != {"PAUSED"}


@pytest.mark.parametrize(
    ("mode", "days"), [(SyncMode.realtime, 1), (SyncMode.attribution, 7), (SyncMode.backfill, 90)]
)
@pytest.mark.parametrize("customer_id", [CHILD_NY_ID, CHILD_BERLIN_ID])
async def test_metrics_equal_ground_truth(provider, ctx, creds, sim, customer_id, mode, days) -> None:
    window = _window(sim, customer_id, mode, days)
    records = await _metrics(provider, ctx, child(customer_id), creds, window)
    account = sim.accounts[customer_id]
    for level in ("campaign", "ad_group", "ad"):
        expected = truth(account, level, window.start, window.end, FROZEN_NOW)
        got = {(r.entity_external_id, r.metrics_date): r for r in records if r.level == level}
        assert set(got) == set(expected), level
        for key, numbers in expected.items():
            r = got[key]
            assert r.impressions == numbers.impressions
            assert r.clicks == numbers.clicks
            assert r.spend == Decimal(numbers.cost_micros) / Decimal(1_000_000)
            assert r.conversions == numbers.conversions
            assert r.revenue == numbers.conversions_value
            assert r.currency == account.currency_code
        for field in ("spend", "conversions", "revenue"):
            total = sum((getattr(r, field) for r in got.values()), Decimal(0))
            assert isinstance(total, Decimal)
        spend = sum((r.spend for r in got.values()), Decimal(0))
        assert spend == sum((Decimal(n.cost_micros) for n in expected.values()), Decimal(0)) / 1_000_000
        conversions = sum((r.conversions for r in got.values()), Decimal(0))
        assert conversions == sum((n.conversions for n in expected.values()), Decimal(0))
        revenue = sum((r.revenue for r in got.values()), Decimal(0))
        assert revenue == sum((n.conversions_value for n in expected.values()), Decimal(0))
    today = sim.accounts[customer_id].today(FROZEN_NOW)
    assert any(r.metrics_date == today for r in records), "today's partial numbers are fetched"


async def test_level_totals_agree_without_performance_max(provider, ctx, creds, sim) -> None:
    window = _window(sim, CHILD_BERLIN_ID, SyncMode.attribution, 7)
    records = await _metrics(provider, ctx, child(CHILD_BERLIN_ID), creds, window)
    totals = {
        level: sum((r.spend for r in records if r.level == level), Decimal(0))
        for level in ("campaign", "ad_group", "ad")
    }
    assert totals["campaign"] == totals["ad_group"] == totals["ad"] > 0


async def test_performance_max_spend_is_in_the_campaign_level_only(provider, ctx, creds, sim) -> None:
    window = _window(sim, CHILD_NY_ID, SyncMode.attribution, 7)
    records = await _metrics(provider, ctx, child(), creds, window)
    account = sim.accounts[CHILD_NY_ID]
    pmax = {c.id for c in account.entities("campaign") if c.channel == "PERFORMANCE_MAX"}
    assert pmax
    spend = {
        level: sum((r.spend for r in records if r.level == level), Decimal(0))
        for level in ("campaign", "ad_group", "ad")
    }
    in_pmax = sum((r.spend for r in records if r.entity_external_id in pmax), Decimal(0))
    assert in_pmax > 0
    # The campaign level (the primary level) covers every campaign; ad groups and ads miss PMax.
    assert spend["campaign"] == spend["ad"] + in_pmax and spend["ad_group"] == spend["ad"]
    assert provider.capabilities.default_level == "campaign"


async def test_ads_sharing_an_id_in_two_ad_groups_stay_two_ads(provider, ctx, creds, sim) -> None:
    window = _window(sim, CHILD_NY_ID, SyncMode.attribution, 7)
    records = await _metrics(provider, ctx, child(), creds, window)
    entities = [r async for b in provider.sync_entities(ctx, child(), creds) for r in b]
    ads = [r for r in entities if r.level == "ad"]
    by_ad_id: dict[str, set[str]] = {}
    for r in ads:
        by_ad_id.setdefault(r.external_id.split("~")[1], set()).add(r.parent_external_id or "")
    shared = {ad_id: parents for ad_id, parents in by_ad_id.items() if len(parents) > 1}
    assert shared, "the simulator repeats ad ids across ad groups"
    # Each (ad group, ad) pair is its own entity with its own parent and its own numbers.
    assert len({r.external_id for r in ads}) == len(ads)
    assert all(r.external_id.split("~")[0] == r.parent_external_id for r in ads)
    ad_id = next(iter(shared))
    rows = [r for r in records if r.level == "ad" and r.entity_external_id.endswith(f"~{ad_id}")]
    expected = truth(sim.accounts[CHILD_NY_ID], "ad", window.start, window.end, FROZEN_NOW)
    assert {(r.entity_external_id, r.metrics_date) for r in rows} == {
        k for k in expected if k[0].endswith(f"~{ad_id}")
    }
    assert len({r.entity_external_id for r in rows}) == len(shared[ad_id])


async def test_attribution_repull_sees_late_conversions(provider, ctx, creds, sim, http) -> None:
    window = _window(sim, CHILD_NY_ID, SyncMode.attribution, 7)

    async def total() -> Decimal:
        records = await _metrics(provider, ctx, child(), creds, window)
        return sum((r.conversions for r in records if r.level == "campaign"), Decimal(0))

    before = await total()
    await http.post("/_sim/clock", json={"advance_s": 5 * 86400})  # late conversions follow time
    assert await total() > before


async def test_window_is_sliced_and_never_held_whole(provider, ctx, creds, sim) -> None:
    window = _window(sim, CHILD_NY_ID, SyncMode.backfill, 30)
    batches = [b async for b in provider.fetch_metrics(ctx, child(), creds, window)]
    for batch in batches:
        days = {r.metrics_date for r in batch}
        assert max(days) - min(days) < timedelta(days=provider.settings.metrics_slice_days)
    # 30 days in 7-day slices -> 5 slices of two searchStream calls (campaign, ad_group_ad).
    assert sim.stats["calls_searchStream"] == 10


async def test_malformed_row_is_a_payload_error(provider, ctx, creds, sim, http) -> None:
    await http.post("/_sim/faults", json={"kind": "malformed", "count": 1})
    window = _window(sim, CHILD_NY_ID, SyncMode.realtime, 1)
    with pytest.raises(PayloadError, match="cost_micros"):
        await _metrics(provider, ctx, child(), creds, window)


async def test_future_days_have_no_rows(provider, ctx, creds, sim) -> None:
    today = sim.accounts[CHILD_BERLIN_ID].today(FROZEN_NOW)
    window = SyncWindow(
        SyncMode.realtime, today + timedelta(days=1), today + timedelta(days=2), "Europe/Berlin"
    )
    assert await _metrics(provider, ctx, child(CHILD_BERLIN_ID), creds, window) == []
    assert isinstance(today, date)


def test_revision_horizon_covers_googles_default_conversion_window() -> None:
    from datetime import UTC, datetime

    from metricx_google import GoogleSettings

    # Conversions are credited to the click date for the conversion window: 30 days by default.
    default = GoogleAdsProvider(GoogleSettings()).capabilities
    assert default.revision_days >= 30 and default.attribution_window_days == 7
    # The nightly tier re-reads 7 days; the deep tier the rest up to the horizon (revision_days > 7).
    assert default.revision_days > default.attribution_window_days
    assert isinstance(datetime.now(UTC), datetime)
    # A longer nightly window never shrinks the horizon.
    assert GoogleAdsProvider(GoogleSettings(attribution_window_days=45)).capabilities.revision_days == 45
