"""Access tokens: minted once, shared through Redis, refreshed once when expired, never leaked."""

from __future__ import annotations

import asyncio

import pytest
from conftest import child, make_ctx
from metricx_google import GoogleAdsProvider
from metricx_google.auth import TokenCache
from metricx_google.simulator import CHILD_NY_ID, DEFAULT_REFRESH_TOKEN
from pydantic import SecretStr

from core import AuthError, ConfigError, Credentials, MetricxError, ProviderCache, SyncMode, SyncWindow


async def _many_calls(provider, ctx, creds, n: int = 5) -> None:
    for _ in range(n):
        await provider.fetch_account(ctx, child(), creds)


async def test_one_mint_for_many_calls(provider, ctx, creds, sim) -> None:
    await _many_calls(provider, ctx, creds, 10)
    assert sim.stats["token_mints"] == 1
    assert sim.stats["api_calls"] == 10


async def test_token_is_shared_across_workers_through_redis(
    settings, http, redis, creds, sim, core_settings
) -> None:
    # Two provider objects (two worker processes) sharing one Redis mint once between them.
    workers = [GoogleAdsProvider(settings) for _ in range(2)]
    ctxs = [make_ctx(http, redis, "acct", core_settings) for _ in workers]
    await asyncio.gather(*[_many_calls(p, c, creds, 3) for p, c in zip(workers, ctxs, strict=True)])
    assert sim.stats["token_mints"] == 1


async def test_separate_connections_get_separate_tokens(provider, ctx, creds, sim) -> None:
    await provider.fetch_account(ctx, child(), creds)
    await provider.fetch_account(ctx, child(CHILD_NY_ID, connection_id="other"), creds)
    assert sim.stats["token_mints"] == 2


async def test_expired_access_token_is_refreshed_exactly_once(provider, ctx, creds, sim, http) -> None:
    await provider.fetch_account(ctx, child(), creds)
    assert (await http.post("/_sim/expire_tokens")).json()["expired"] == 1
    info = await provider.fetch_account(ctx, child(), creds)
    assert info.timezone == "America/New_York"
    assert sim.stats["token_mints"] == 2
    assert sim.stats["auth_failures"] == 1
    await _many_calls(provider, ctx, creds, 3)
    assert sim.stats["token_mints"] == 2


async def test_short_lived_tokens_are_refreshed_before_expiry(
    settings, http, redis, creds, sim, core_settings
) -> None:
    # Lifetime below the margin: cached for half its life, so the API never sees an expired token.
    await http.post("/_sim/config", json={"token_lifetime_s": 2})
    provider = GoogleAdsProvider(settings)
    ctx = make_ctx(http, redis, "a", core_settings)
    await provider.fetch_account(ctx, child(), creds)
    await asyncio.sleep(1.2)
    await provider.fetch_account(ctx, child(), creds)
    assert sim.stats["token_mints"] == 2
    assert sim.stats["auth_failures"] == 0


async def test_revoked_refresh_token_needs_reconnect(provider, ctx, creds, sim, http) -> None:
    await provider.fetch_account(ctx, child(), creds)
    await http.post("/_sim/revoke", json={"refresh_token": DEFAULT_REFRESH_TOKEN})
    with pytest.raises(AuthError, match="reconnect Google Ads") as caught:
        await provider.fetch_account(ctx, child(), creds)
    assert DEFAULT_REFRESH_TOKEN not in str(caught.value)
    with pytest.raises(AuthError):
        await provider.validate_token(ctx, child(), creds)


async def test_invalid_client_is_a_config_error(settings, ctx, creds) -> None:
    bad = settings.model_copy(update={"client_secret": SecretStr("wrong")})
    with pytest.raises(ConfigError, match="METRICX_GOOGLE_CLIENT_SECRET"):
        await GoogleAdsProvider(bad).validate_token(ctx, child(), creds)


async def test_missing_oauth_client_is_a_config_error(settings, ctx, creds) -> None:
    bad = settings.model_copy(update={"client_id": ""})
    with pytest.raises(ConfigError, match="METRICX_GOOGLE_CLIENT_ID"):
        await GoogleAdsProvider(bad).validate_token(ctx, child(), creds)


async def test_cached_token_is_encrypted_namespaced_and_expires(provider, ctx, creds, redis, sim) -> None:
    await provider.fetch_account(ctx, child(), creds)
    issued = next(iter(sim.grants))
    keys = [k.decode() for k in await redis.keys("metricx:cache:google:access:*")]
    assert len(keys) == 1 and keys[0].startswith("metricx:cache:google:access:conn-1000000002:")
    raw = await redis.get(keys[0])
    assert issued.encode() not in raw and DEFAULT_REFRESH_TOKEN.encode() not in raw
    ttl = await redis.ttl(keys[0])
    assert 0 < ttl <= 3599 - provider.settings.token_refresh_margin_s


async def test_cache_unreadable_with_another_refresh_token(redis, core_settings) -> None:
    cache = TokenCache(ProviderCache(redis, "google", settings=core_settings))
    await cache.put("c", "refresh-a", "ya29.token", 60)
    assert await cache.get("c", "refresh-a") == "ya29.token"
    assert await cache.get("c", "refresh-b") is None


async def _unblock(redis) -> None:
    for key in await redis.keys("metricx:rl:*"):
        await redis.delete(key)


async def test_tokens_never_appear_in_errors(provider, ctx, creds, sim, http, redis) -> None:
    secrets_seen: list[str] = [DEFAULT_REFRESH_TOKEN, provider.settings.client_secret.get_secret_value()]
    today = sim.accounts[CHILD_NY_ID].today(sim.now())
    window = SyncWindow(SyncMode.realtime, today, today, "America/New_York")
    messages: list[str] = []
    faults = [
        {"kind": "throttle", "count": 1, "retry_after_s": 5},
        {"kind": "throttle", "scope": "developer", "count": 1},
        {"kind": "server_error", "count": 1, "status": 503, "code": "TRANSIENT_ERROR"},
        {"kind": "malformed", "mode": "truncated", "count": 2},
        {"kind": "malformed", "count": 1},
    ]
    for fault in faults:
        await http.post("/_sim/faults", json=fault)
        with pytest.raises(MetricxError) as caught:
            async for _ in provider.fetch_metrics(ctx, child(), creds, window):
                pass
        messages.append(str(caught.value))
        await http.delete("/_sim/faults")
        await _unblock(redis)
    with pytest.raises(MetricxError) as caught:
        await provider.fetch_account(ctx, child(login=None), creds)
    messages.append(str(caught.value))
    await http.post("/_sim/revoke", json={"refresh_token": DEFAULT_REFRESH_TOKEN})
    await http.post("/_sim/expire_tokens")
    with pytest.raises(AuthError) as caught:
        await provider.fetch_account(ctx, child(), creds)
    messages.append(str(caught.value))
    secrets_seen += list(sim.grants)
    assert len(messages) == 7
    for message in messages:
        for secret in secrets_seen:
            assert secret not in message
        assert "ya29" not in message and "Bearer" not in message


def test_credentials_repr_hides_tokens() -> None:
    assert DEFAULT_REFRESH_TOKEN not in repr(Credentials(refresh_token=DEFAULT_REFRESH_TOKEN))
