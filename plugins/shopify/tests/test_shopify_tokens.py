"""Expiring offline tokens, client credentials and permanent tokens against the simulator's token
endpoint (60-minute tokens, a refresh token that dies with its use), with the real database and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from metricx_shopify.jobs import enqueue_store_sync
from metricx_shopify.provider import ShopifyProvider
from shopify_helpers import fetch_all, fetch_one

from core import Credentials, provider_context
from core.testing.harness import ConnectionCredentials, account_ref, load_credentials

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CONN = "SELECT * FROM connections WHERE id = :c"


def expiring(sim: Any, domain: str, *, expired: bool = False) -> Credentials:
    """Credentials as the app's install stores them: a 60-minute token and its refresh token."""
    tokens = sim.control(f"shops/{domain}/tokens")
    ttl = -60 if expired else tokens["expires_in"]
    return Credentials(
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
    )


def test_the_simulator_answers_a_refresh_in_the_fixtures_shape(shopify_sim: Any, new_shop: Any) -> None:
    spec = new_shop(orders=1)
    first = shopify_sim.control(f"shops/{spec.domain}/tokens")
    form = {
        "client_id": "sim-client-id",
        "client_secret": "sim-client-secret",
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
    }
    url = f"{shopify_sim.url}/admin/oauth/access_token"
    headers = {"X-Shopify-Shop-Domain": spec.domain}
    rotated = httpx.post(url, data=form, headers=headers)
    fixture = json.loads((FIXTURES / "oauth_refresh_token_response.json").read_text())["body"]
    assert rotated.status_code == 200 and set(rotated.json()) == set(fixture)
    assert rotated.json()["expires_in"] == 3600
    # the refresh token died with its use
    again = httpx.post(url, data=form, headers=headers)
    refused = json.loads((FIXTURES / "oauth_invalid_grant.json").read_text())
    assert again.status_code == refused["status"] and again.json()["error"] == refused["body"]["error"]


async def test_two_workers_refreshing_at_once_rotate_once_and_keep_the_shop(
    shopify_sim: Any, new_shop: Any, shop_connection: Any, redis_client: Any
) -> None:
    spec = new_shop(orders=3)
    ws, conn = await shop_connection(spec, credentials=expiring(shopify_sim, spec.domain, expired=True))
    before = shopify_sim.stats()["stats"].get("rotations", 0)
    provider = ShopifyProvider()
    account_row = await fetch_one(CONN, c=conn)

    async def one_worker() -> Credentials:
        # each "worker" has its own HTTP client, provider context and stale copy of the credentials
        async with httpx.AsyncClient() as http:
            ctx = provider_context(
                redis=redis_client,
                client=http,
                provider="shopify",
                account=spec.domain,
                credential_store=ConnectionCredentials(conn),
            )
            stale = await load_credentials(conn)
            client = provider.client(ctx, account_ref(account_row), stale)
            await client.fetch_shop()
            assert client.auth is not None
            return client.auth.credentials

    results = await asyncio.gather(*(one_worker() for _ in range(4)))
    assert shopify_sim.stats()["stats"]["rotations"] - before == 1  # one refresh for all four
    stored = await load_credentials(conn)
    assert {r.access_token for r in results} == {stored.access_token}
    assert stored.refresh_token in shopify_sim.state.refresh_tokens  # the stored refresh token is live
    assert stored.expires_at is not None and stored.expires_at > datetime.now(UTC) + timedelta(minutes=50)
    [tokens] = await fetch_all("SELECT * FROM shopify_tokens WHERE connection_id = :c", c=conn)
    assert (tokens.grant, tokens.rotations) == ("refresh_token", 1)
    assert tokens.refresh_expires_at > datetime.now(UTC) + timedelta(days=89)
    del ws


async def test_a_used_refresh_token_needs_reconnect_without_leaking_it(
    shopify_sim: Any, new_shop: Any, shop_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    spec = new_shop(orders=3)
    creds = expiring(shopify_sim, spec.domain, expired=True)
    shopify_sim.state.use_refresh_token(spec.domain, creds.refresh_token)  # used elsewhere: dead
    ws, conn = await shop_connection(spec, credentials=creds)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "reconnect_required" and row.last_error_kind == "auth"
    assert "invalid_grant" in row.last_sync_error and creds.refresh_token not in row.last_sync_error


async def test_client_credentials_tokens_are_minted_again_and_permanent_ones_never_refreshed(
    shopify_sim: Any, new_shop: Any, shop_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    spec = new_shop(orders=4)
    minted = shopify_sim.state.issue_tokens(spec.domain, with_refresh=False)
    shopify_sim.state.expiring.pop(minted["access_token"])  # expired at Shopify
    old = Credentials(access_token=minted["access_token"], expires_at=datetime.now(UTC) - timedelta(hours=1))
    ws, conn = await shop_connection(spec, credentials=old)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    assert (await fetch_one(CONN, c=conn)).sync_status == "idle"
    stored = await load_credentials(conn)
    assert stored.access_token != old.access_token and stored.refresh_token is None
    assert stored.expires_at is not None and stored.expires_at > datetime.now(UTC) + timedelta(hours=23)

    # a permanent custom-app token is used as it is: the token endpoint is never called
    spec2 = new_shop(orders=2)
    ws2, conn2 = await shop_connection(spec2)
    await enqueue_store_sync(str(conn2), str(ws2), redis=redis_client)
    await run_worker()
    assert (await load_credentials(conn2)).access_token == spec2.token
    assert not await fetch_all("SELECT 1 FROM shopify_tokens WHERE connection_id = :c", c=conn2)


async def test_a_token_of_another_shop_is_refused(
    shopify_sim: Any, new_shop: Any, shop_connection: Any, run_worker: Any, redis_client: Any
) -> None:
    # a tenant names another tenant's shop but authenticates with its own shop's token
    victim, own = new_shop(orders=3), new_shop(orders=3)
    ws, conn = await shop_connection(victim, token=own.token)
    await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
    await run_worker()
    row = await fetch_one(CONN, c=conn)
    assert row.sync_status == "reconnect_required" and own.domain in row.last_sync_error
    assert (
        await fetch_one("SELECT count(*) AS n FROM shopify_orders WHERE connection_id = :c", c=conn)
    ).n == 0


async def _refresh_in_this_process(redis_client: Any, spec: Any, conn: uuid.UUID) -> Credentials:
    """What another worker does when it needs the shop: load the stored pair, call Shopify (refreshing
    under the connection's lock when the token has expired)."""
    row = await fetch_one(CONN, c=conn)
    async with httpx.AsyncClient() as http:
        ctx = provider_context(
            redis=redis_client,
            client=http,
            provider="shopify",
            account=spec.domain,
            credential_store=ConnectionCredentials(conn),
        )
        client = ShopifyProvider().client(ctx, account_ref(row), await load_credentials(conn))
        await client.fetch_shop()
        assert client.auth is not None
        return client.auth.credentials


@pytest.mark.slow
async def test_a_simulated_week_of_60_minute_tokens_through_real_workers(
    shopify_sim: Any,
    new_shop: Any,
    shop_connection: Any,
    shopify_env: dict[str, str],
    worker_process: Any,
    redis_client: Any,
) -> None:
    spec = new_shop(products=3, customers=3, orders=20, days=10)
    ws, conn = await shop_connection(spec, credentials=expiring(shopify_sim, spec.domain))
    worker_process(**shopify_env)
    worker_process(**shopify_env)  # two real workers take the store syncs in turn
    before = shopify_sim.stats()["stats"].get("rotations", 0)
    steps = 7 * 24 // 4
    for step in range(steps):
        shopify_sim.control("clock", advance_s=4 * 3600)  # every token issued so far has expired
        await enqueue_store_sync(str(conn), str(ws), redis=redis_client)
        if step % 2:
            # and a third party refreshes at the same moment the worker does: both keep the shop
            await _refresh_in_this_process(redis_client, spec, conn)
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            finished = await fetch_one(
                "SELECT count(*) AS n FROM sync_runs WHERE connection_id = :c AND status = 'complete'",
                c=conn,
            )
            row = await fetch_one(CONN, c=conn)
            assert row.sync_status != "reconnect_required", (step, row.last_sync_error)
            if finished.n > step:
                break
            assert asyncio.get_running_loop().time() < deadline, f"step {step} did not finish"
            await asyncio.sleep(0.1)
    runs = await fetch_all("SELECT status FROM sync_runs WHERE connection_id = :c", c=conn)
    assert {r.status for r in runs} == {"complete"}, runs
    rotations = shopify_sim.stats()["stats"]["rotations"] - before
    [tokens] = await fetch_all("SELECT * FROM shopify_tokens WHERE connection_id = :c", c=conn)
    assert rotations >= steps and tokens.rotations == rotations  # every rotation was stored
    stored = await load_credentials(conn)
    assert stored.refresh_token in shopify_sim.state.refresh_tokens  # the shop is still ours
    assert shopify_sim.stats()["stats"].get("invalid_grant", 0) == 0
    print(f"\nweek: {steps} syncs, {rotations} rotations stored, 0 invalid_grant")
