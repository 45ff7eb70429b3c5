"""The REST client against each simulated fault: the right core error, paging, streams, pacing."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from conftest import BASE, child, make_ctx
from metricx_google.client import GoogleAdsClient, customer_id_of
from metricx_google.failures import parse_duration_s, seconds_until_pacific_midnight
from metricx_google.reports import CUSTOMER_QUERY, ENTITY_QUERIES
from metricx_google.simulator import CHILD_NY_ID, MANAGER_ID

from core import ConfigError, RateLimited, SyncMode, SyncWindow, TransientError


def _realtime(sim) -> SyncWindow:
    today = sim.accounts[CHILD_NY_ID].today(sim.now())
    return SyncWindow(SyncMode.realtime, today, today, "America/New_York")


async def _drain(provider, ctx, creds, window) -> int:
    rows = 0
    async for batch in provider.fetch_metrics(ctx, child(), creds, window):
        rows += len(batch)
    return rows


async def test_rate_limit_honours_retry_delay(provider, ctx, creds, sim, http) -> None:
    await http.post("/_sim/faults", json={"kind": "throttle", "count": 1, "retry_after_s": 37})
    with pytest.raises(RateLimited) as caught:
        await provider.fetch_account(ctx, child(), creds)
    assert caught.value.retry_after_s == 37
    assert caught.value.scope == "account"
    # Every worker of this account now waits (the limiter was told).
    assert 30 < await ctx.limiter.blocked_for() <= 37


async def test_daily_quota_defers_until_pacific_midnight(provider, ctx, creds, http) -> None:
    await http.post("/_sim/faults", json={"kind": "throttle", "scope": "developer", "count": 1})
    with pytest.raises(RateLimited) as caught:
        await provider.fetch_account(ctx, child(), creds)
    expected = seconds_until_pacific_midnight(datetime.now(UTC))
    assert caught.value.scope == "developer"
    assert abs(caught.value.retry_after_s - expected) < 5
    assert "daily" in caught.value.message


async def test_daily_quota_with_retry_delay(provider, ctx, creds, http) -> None:
    await http.post(
        "/_sim/faults", json={"kind": "throttle", "scope": "developer", "count": 1, "retry_after_s": 1200}
    )
    with pytest.raises(RateLimited) as caught:
        await provider.fetch_account(ctx, child(), creds)
    assert (caught.value.retry_after_s, caught.value.scope) == (1200, "developer")


def test_pacific_midnight() -> None:
    # 07:00 UTC on a winter day is 23:00 in Los Angeles: one hour to go.
    assert seconds_until_pacific_midnight(datetime(2026, 1, 15, 7, 0, tzinfo=UTC)) == 3600


@pytest.mark.parametrize(
    ("status", "code"), [(500, "INTERNAL_ERROR"), (503, "TRANSIENT_ERROR"), (504, "DEADLINE_EXCEEDED")]
)
async def test_server_errors_are_transient(provider, ctx, creds, http, status, code) -> None:
    await http.post("/_sim/faults", json={"kind": "server_error", "count": 1, "status": status, "code": code})
    with pytest.raises(TransientError):
        await provider.fetch_account(ctx, child(), creds)
    # The fault was one request long: the next sync works.
    assert (await provider.fetch_account(ctx, child(), creds)).currency == "USD"


async def test_broken_stream_is_rerun_once(provider, ctx, creds, sim, http) -> None:
    await http.post("/_sim/faults", json={"kind": "malformed", "mode": "truncated", "count": 1})
    rows = await _drain(provider, ctx, creds, _realtime(sim))
    assert rows > 0
    assert sim.stats["fault_malformed"] == 1
    assert sim.stats["calls_searchStream"] == 3  # campaign + ad_group_ad queries, and the re-run


async def test_broken_stream_twice_is_transient(provider, ctx, creds, sim, http) -> None:
    await http.post("/_sim/faults", json={"kind": "malformed", "mode": "truncated", "count": 2})
    with pytest.raises(TransientError, match="searchStream broke twice"):
        await _drain(provider, ctx, creds, _realtime(sim))


async def test_permission_denied_and_disabled_accounts(provider, ctx, creds, http) -> None:
    with pytest.raises(ConfigError, match=r"USER_PERMISSION_DENIED|permission denied") as denied:
        await provider.fetch_account(ctx, child(login="1000000999"), creds)
    # the operator is told which setting fixes it
    assert "--config login_customer_id=<manager id>" in str(denied.value)
    created = await http.post(
        "/_sim/accounts", json={"customer_id": "3000000001", "manager_id": MANAGER_ID, "status": "CANCELED"}
    )
    assert created.status_code == 201
    with pytest.raises(ConfigError, match="not enabled"):
        await provider.fetch_account(ctx, child("3000000001"), creds)


async def test_bad_query_is_a_config_error_with_googles_message(provider, ctx, creds) -> None:
    client = provider.client(ctx, child(), creds)
    with pytest.raises(ConfigError, match="Unrecognized field"):
        await client.search_stream("SELECT campaign.nope FROM campaign")


async def test_unsupported_version_is_a_config_error(settings, ctx, creds, http) -> None:
    from metricx_google import GoogleAdsProvider

    provider = GoogleAdsProvider(settings.model_copy(update={"api_version": "v19"}))
    with pytest.raises(ConfigError, match="METRICX_GOOGLE_API_VERSION"):
        await provider.fetch_account(ctx, child(), creds)


async def test_search_pages_across_10000_rows(provider, ctx, creds, sim, http) -> None:
    spec = {
        "customer_id": "4000000001",
        "campaigns": 20,
        "ad_groups_per_campaign": 25,
        "ads_per_ad_group": 21,
    }
    assert (await http.post("/_sim/accounts", json=spec)).status_code == 201
    account = child("4000000001", login=None)
    client = provider.client(ctx, account, creds)
    pages = [page async for page in client.search(ENTITY_QUERIES["ad"])]
    assert [len(p) for p in pages] == [10_000, 500]
    ids = [row["adGroupAd"]["ad"]["id"] for page in pages for row in page]
    assert len(set(ids)) == 10_500
    entities = [r async for batch in provider.sync_entities(ctx, account, creds) for r in batch]
    assert sum(1 for r in entities if r.level == "ad") == 10_500


async def test_limiter_is_acquired_before_every_request(provider, ctx, creds, sim) -> None:
    await _drain(provider, ctx, creds, _realtime(sim))
    await provider.fetch_account(ctx, child(), creds)
    # every request counts, the token mint included (they all go through ProviderHTTP)
    assert sim.stats["api_calls"] == 3 and sim.stats["token_mints"] == 1
    assert ctx.limiter.calls == sim.stats["api_calls"] + sim.stats["token_mints"]


async def test_headers_sent(settings, redis, creds, core_settings) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "ya29.t", "expires_in": 3599})
        return httpx.Response(200, json=[{"results": [], "fieldMask": "customer.id"}])

    from pydantic import SecretStr

    configured = settings.model_copy(update={"developer_token": SecretStr("dev-tok")})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=BASE) as http:
        ctx = make_ctx(http, redis, "h", core_settings)
        from metricx_google import GoogleAdsProvider

        client = GoogleAdsProvider(configured).client(ctx, child(login="100-000-0001"), creds)
        await client.search_stream(CUSTOMER_QUERY)
    api = seen[-1]
    assert api.url.path == f"/v26/customers/{CHILD_NY_ID}/googleAds:searchStream"
    assert api.headers["authorization"] == "Bearer ya29.t"
    assert api.headers["login-customer-id"] == MANAGER_ID
    assert api.headers["developer-token"] == "dev-tok"
    token_form = seen[0].content.decode()
    assert "grant_type=refresh_token" in token_form
    assert "pageSize" not in api.content.decode()


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), 502],
)
async def test_network_failures_are_transient(settings, redis, creds, failure, core_settings) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "ya29.t", "expires_in": 3599})
        if isinstance(failure, Exception):
            raise failure
        return httpx.Response(failure, text="<html>Bad Gateway</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=BASE) as http:
        ctx = make_ctx(http, redis, "n", core_settings)
        from metricx_google import GoogleAdsProvider

        with pytest.raises(TransientError):
            await GoogleAdsProvider(settings).fetch_account(ctx, child(), creds)


async def test_token_endpoint_down_is_transient(settings, redis, creds, core_settings) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="unavailable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=BASE) as http:
        ctx = make_ctx(http, redis, "t", core_settings)
        from metricx_google import GoogleAdsProvider

        with pytest.raises(TransientError, match="token endpoint"):
            await GoogleAdsProvider(settings).validate_token(ctx, child(), creds)


async def test_slow_responses_still_answer(provider, ctx, creds, http) -> None:
    await http.post("/_sim/faults", json={"kind": "timeout", "count": 1, "seconds": 0.3})
    started = time.monotonic()
    await provider.fetch_account(ctx, child(), creds)
    assert time.monotonic() - started >= 0.3


def test_customer_ids() -> None:
    assert customer_id_of("123-456-7890") == "1234567890"
    with pytest.raises(ConfigError):
        customer_id_of("act_123")
    assert parse_duration_s("37s") == 37.0
    assert parse_duration_s({"seconds": "2", "nanos": 500_000_000}) == 2.5
    assert parse_duration_s("soon") is None


async def test_invalid_login_customer_id_is_a_config_error(provider, ctx, creds) -> None:
    with pytest.raises(ConfigError, match="login_customer_id"):
        GoogleAdsClient(ctx, provider.settings, child(login="mgr-one"), provider.tokens(ctx, child(), creds))
