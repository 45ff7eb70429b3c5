"""Each failure of the Graph API maps to the right core error; tokens never leak."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis.aioredis
import httpx
import pytest
import structlog
from meta_helpers import BASE_URL, by_key, collect, local_today, ref, truth_by_key, window
from metricx_meta import MetaProvider, MetaSettings
from metricx_meta.simulator import SimState
from metricx_meta.simulator.graph import query_scope

from core import (
    AuthError,
    ConfigError,
    Credentials,
    PayloadError,
    PermanentError,
    ProviderContext,
    RateLimited,
    SyncMode,
    TransientError,
    provider_context,
)

SECRET = "EAAG-super-secret-token-42"


@pytest.fixture
async def secret(sim_post: Any) -> Credentials:
    await sim_post("/_sim/tokens", {"token": SECRET, "state": "valid"})
    return Credentials(access_token=SECRET)


async def attribution(provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState) -> Any:
    end = local_today(sim, "1001") - timedelta(days=1)
    win = window(SyncMode.attribution, end - timedelta(days=6), end)
    records = [r for batch in await collect(provider.fetch_metrics(ctx, ref(), creds, win)) for r in batch]
    return win, records


@pytest.mark.parametrize(("code", "subcode"), [(4, None), (17, 2446079), (613, 1487742), (80000, 2446079)])
async def test_throttle_raises_rate_limited_with_meta_estimate(
    provider: MetaProvider, ctx: ProviderContext, secret: Credentials, sim_post: Any, code: int, subcode: Any
) -> None:
    await sim_post(
        "/_sim/faults", {"kind": "throttle", "code": code, "subcode": subcode, "regain_minutes": 7}
    )
    with pytest.raises(RateLimited) as caught:
        await provider.fetch_account(ctx, ref(), secret)
    assert caught.value.retry_after_s == 7 * 60
    assert f"error {code}" in caught.value.message
    assert await ctx.limiter.blocked_for() > 6 * 60  # every worker waits, not just this one


async def test_expired_token_is_an_auth_error_asking_to_reconnect(
    provider: MetaProvider, ctx: ProviderContext, secret: Credentials, sim_post: Any
) -> None:
    await sim_post("/_sim/tokens", {"token": SECRET, "state": "expired"})
    with pytest.raises(AuthError, match="reconnect the Meta account") as caught:
        await provider.fetch_account(ctx, ref(), secret)
    assert "190/463" in caught.value.message


async def test_server_errors_are_transient_and_retried_in_place(
    settings: MetaSettings, ctx: ProviderContext, secret: Credentials, sim_post: Any, http: httpx.AsyncClient
) -> None:
    await sim_post("/_sim/faults", {"kind": "server_error", "count": 3, "status": 503})
    with pytest.raises(TransientError):
        await MetaProvider(settings).fetch_account(ctx, ref(), secret)  # no in-place retries

    patient = MetaProvider(settings.model_copy(update={"max_retries": 2}))
    await http.delete("/_sim/faults")
    await sim_post("/_sim/faults", {"kind": "server_error", "count": 2, "html": True})
    assert (await patient.fetch_account(ctx, ref(), secret)).currency == "USD"


@pytest.mark.parametrize("corrupt", [False, True])
async def test_empty_or_corrupt_200_is_transient(
    provider: MetaProvider, ctx: ProviderContext, secret: Credentials, sim_post: Any, corrupt: bool
) -> None:
    await sim_post("/_sim/faults", {"kind": "malformed", "mode": "truncated" if corrupt else "empty"})
    with pytest.raises(TransientError, match="empty or corrupt"):
        await provider.fetch_account(ctx, ref(), secret)


async def test_connection_failures_are_transient_without_the_token(
    settings: MetaSettings, secret: Credentials
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout(f"timed out connecting to {request.url}?access_token={SECRET}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as http:
        ctx = provider_context(
            redis=fakeredis.aioredis.FakeRedis(), client=http, provider="meta", account="1001"
        )
        with pytest.raises(TransientError, match="ConnectTimeout") as caught:
            await MetaProvider(settings).fetch_account(ctx, ref(), secret)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ({"field": "spend", "value": "12,5 USD"}, "spend"),
        ({"field": "impressions", "value": "n/a"}, "impressions"),
        ({"field": "date_start", "drop": True}, "metrics_date"),
        ({"field": "ad_id", "drop": True}, "entity_external_id"),
    ],
)
async def test_malformed_rows_raise_payload_error_naming_the_field(
    provider: MetaProvider, ctx: ProviderContext, secret: Credentials, sim: SimState, sim_post: Any,
    fault: dict[str, Any], field: str,
) -> None:  # fmt: skip
    await sim_post("/_sim/faults", {"kind": "malformed", "path": "insights", **fault})
    sim.faults[0].account = None
    # the fault hits the first insights page: campaign level first, so corrupt ad rows need the ad level
    if field == "entity_external_id":
        sim.faults[0].params["field"] = "campaign_id"
    with pytest.raises(PayloadError, match=field):
        await attribution(provider, ctx, secret, sim)


@pytest.mark.parametrize("mode", ["stuck", "failed", "skipped"])
async def test_failed_async_run_is_retried_then_split_then_succeeds(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any, mode: str
) -> None:
    await sim_post("/_sim/faults", {"kind": "async", "mode": mode, "count": 2})
    end = local_today(sim, "1001")
    win = window(SyncMode.backfill, end - timedelta(days=13), end)
    records = [r for b in await collect(provider.fetch_metrics(ctx, ref(), creds, win)) for r in b]

    assert by_key(records) == truth_by_key(sim, "1001", win.start, win.end)
    modes = [run.mode for run in sim.runs.values()]
    campaigns = len(sim.accounts["1001"].campaigns)
    # 2 slices x 3 levels, +2 failed tries, then the failed campaign report split: into one run per
    # campaign (failed, skipped), or in two halves of days (stuck: Meta is slow, not the report big)
    split = 2 if mode == "stuck" else campaigns
    assert modes[:2] == [mode, mode] and len(modes) == 2 * 3 + 2 + split - 1


async def test_single_object_day_failing_gives_up_with_a_clear_error(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    """Split account -> campaigns, then give up on the first campaign-day: no endless retries."""
    await sim_post("/_sim/faults", {"kind": "async", "mode": "failed", "count": None})
    day = local_today(sim, "1001") - timedelta(days=3)
    with pytest.raises(PermanentError, match=r"report of campaign \d+ for .* even alone \(report run ended"):
        await collect(provider.fetch_metrics(ctx, ref(), creds, window(SyncMode.backfill, day, day)))


async def test_single_day_run_stuck_twice_is_transient_without_object_splits(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    await sim_post("/_sim/faults", {"kind": "async", "mode": "stuck", "count": None})
    day = local_today(sim, "1001") - timedelta(days=3)
    with pytest.raises(TransientError, match="stuck at 0%"):
        await collect(provider.fetch_metrics(ctx, ref(), creds, window(SyncMode.backfill, day, day)))
    assert len(sim.runs) == 2  # rerun once, no run per campaign


@pytest.mark.parametrize("bounds", [{"max_limit": 20}, {"max_days": 2}, {"max_limit": 30, "max_days": 3}])
async def test_reduce_the_amount_of_data_shrinks_limit_then_range(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any,
    bounds: dict[str, int],
) -> None:  # fmt: skip
    await sim_post("/_sim/faults", {"kind": "reduce_data", "count": None, **bounds})
    win, records = await attribution(provider, ctx, creds, sim)
    assert by_key(records) == truth_by_key(sim, "1001", win.start, win.end)


async def test_reduce_data_that_never_passes_is_transient(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    await sim_post("/_sim/faults", {"kind": "reduce_data", "count": None})
    with pytest.raises(TransientError, match="reduce the amount of data"):
        await attribution(provider, ctx, creds, sim)


async def test_usage_at_95_percent_blocks_the_limiter(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim_post: Any
) -> None:
    await sim_post("/_sim/faults", {"kind": "usage", "pct": 96, "regain_minutes": 3})
    await provider.fetch_account(ctx, ref(), creds)  # succeeds, but reports 96% usage
    assert await ctx.limiter.blocked_for() > 170
    with pytest.raises(RateLimited):
        await provider.fetch_account(ctx, ref(), creds)  # the limiter refuses before calling Meta


async def test_old_since_and_deprecated_version_are_config_errors(
    provider: MetaProvider, settings: MetaSettings, ctx: ProviderContext, creds: Credentials, sim: SimState
) -> None:
    old = local_today(sim, "1001") - timedelta(days=38 * 31)
    with pytest.raises(ConfigError, match="3018"):
        await collect(provider.fetch_metrics(ctx, ref(), creds, window(SyncMode.attribution, old, old)))
    deprecated = MetaProvider(settings.model_copy(update={"api_version": "v19.0"}))
    with pytest.raises(ConfigError, match="deprecated version"):
        await deprecated.fetch_account(ctx, ref(), creds)


def test_check_credentials_is_offline_and_asks_to_reconnect(provider: MetaProvider) -> None:
    with pytest.raises(AuthError, match="reconnect"):
        provider.check_credentials(Credentials())
    with pytest.raises(AuthError, match="reconnect"):
        provider.check_credentials(Credentials(SECRET, expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    provider.check_credentials(Credentials(SECRET, expires_at=datetime.now(UTC) + timedelta(days=30)))


async def test_token_never_appears_in_errors_or_logs(
    settings: MetaSettings,
    http: httpx.AsyncClient,
    redis: fakeredis.aioredis.FakeRedis,
    secret: Credentials,
    sim: SimState,
    sim_post: Any,
) -> None:
    provider = MetaProvider(settings.model_copy(update={"max_retries": 1}))
    faults = [
        {"kind": "throttle"},
        {"kind": "server_error", "count": 2},
        {"kind": "malformed", "mode": "empty", "count": 2},
        {"kind": "malformed", "field": "spend", "value": SECRET},
    ]
    errors: list[BaseException] = []
    with structlog.testing.capture_logs() as logs:
        for n, fault in enumerate(faults):
            # a limiter of its own per fault: the throttle's block must not refuse the next case
            ctx = provider_context(redis=redis, client=http, provider="meta", account=f"1001-{n}")
            await sim_post("/_sim/faults", fault)
            with pytest.raises(Exception) as caught:
                await attribution(provider, ctx, secret, sim)
            errors.append(caught.value)
            sim.faults.clear()
        await sim_post("/_sim/tokens", {"token": SECRET, "state": "expired"})
        with pytest.raises(AuthError) as auth:
            await provider.fetch_account(ctx, ref(), secret)
        errors.append(auth.value)
    assert [type(e).__name__ for e in errors] == [
        "RateLimited", "TransientError", "TransientError", "PayloadError", "AuthError"
    ]  # fmt: skip
    for error in errors:
        assert SECRET not in str(error) and SECRET not in repr(error.args)
    assert logs and SECRET not in repr(logs)


def test_base_url_setting_points_the_client_anywhere(provider: MetaProvider) -> None:
    assert provider.settings.base_url == BASE_URL


async def test_too_much_data_on_an_ad_level_day_splits_by_object_and_completes(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    """100/1487534 on every ad-level run broader than one ad set: account -> campaigns -> ad sets."""
    await sim_post(
        "/_sim/faults",
        {"kind": "async", "error": "too_much_data", "level": "ad", "until_scope": "adset", "count": None},
    )
    day = local_today(sim, "1001") - timedelta(days=2)
    win = window(SyncMode.backfill, day, day)
    records = [r for b in await collect(provider.fetch_metrics(ctx, ref(), creds, win)) for r in b]

    assert by_key(records) == truth_by_key(sim, "1001", day, day)
    account = sim.accounts["1001"]
    ad_runs = [run for run in sim.runs.values() if run.query.level == "ad"]
    scopes = [query_scope(run.query) for run in ad_runs]
    # too much data is not retried as is: one account run, one per campaign, one per ad set
    assert scopes[0] == "account" and scopes.count("account") == 1
    assert (scopes.count("campaign"), scopes.count("adset")) == (len(account.campaigns), len(account.adsets))
    assert [run.mode for run in ad_runs].count("normal") == len(account.adsets)


async def test_failed_run_with_a_permanent_cause_is_not_retried(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    await sim_post("/_sim/faults", {"kind": "async", "error": "invalid_breakdowns", "count": None})
    day = local_today(sim, "1001") - timedelta(days=2)
    with pytest.raises(PermanentError, match="1504041"):
        await collect(provider.fetch_metrics(ctx, ref(), creds, window(SyncMode.backfill, day, day)))
    assert len(sim.runs) == 1


async def test_failed_run_with_an_app_throttle_defers_the_app(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    await sim_post("/_sim/faults", {"kind": "async", "error": "app_throttle", "count": 1})
    day = local_today(sim, "1001") - timedelta(days=2)
    with pytest.raises(RateLimited, match="1504022") as raised:
        await collect(provider.fetch_metrics(ctx, ref(), creds, window(SyncMode.backfill, day, day)))
    assert raised.value.scope == "app"


async def test_report_refused_at_creation_for_too_much_data_is_split(
    provider: MetaProvider, ctx: ProviderContext, creds: Credentials, sim: SimState, sim_post: Any
) -> None:
    """The POST starting a run answers 100/1487534 for over 3 days: the slice is split, not retried."""
    await sim_post("/_sim/faults", {"kind": "reduce_data", "method": "POST", "max_days": 3, "count": None})
    end = local_today(sim, "1001") - timedelta(days=1)
    win = window(SyncMode.backfill, end - timedelta(days=6), end)
    records = [r for b in await collect(provider.fetch_metrics(ctx, ref(), creds, win)) for r in b]
    assert by_key(records) == truth_by_key(sim, "1001", win.start, win.end)
    assert all((run.query.until - run.query.since).days < 3 for run in sim.runs.values())
